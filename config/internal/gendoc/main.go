// Command gendoc writes docs/config.md, the reference of every configuration key, from
// the config structs themselves: the keys and types by reflection on config.Config and on
// the Config of every policy kind of the rule file (found in config/kinds.go), the
// descriptions from the fields' doc comments (go/ast), and the defaults from
// config.Default, from the packages' exported defaults (smtpd.Config.Defaults,
// content.DefaultLimits, auth.DefaultArgon2Params) and otherwise from the "default"
// each field's comment states.
//
// Run it from anywhere in the module after changing a config struct:
//
//	go run ./config/internal/gendoc
//
// (or go generate ./config). The test of this package fails while docs/config.md is stale.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("o", "", "output file (default: docs/config.md of the module)")
	flag.Parse()
	root, err := moduleRoot()
	if err != nil {
		fail(err)
	}
	doc, err := generate(root)
	if err != nil {
		fail(err)
	}
	path := *out
	if path == "" {
		path = filepath.Join(root, docPath)
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, doc) {
		return
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gendoc:", err)
	os.Exit(1)
}

// docPath is the generated file, relative to the module root.
const docPath = "docs/config.md"

// moduleRoot is the directory of go.mod, looked for from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
