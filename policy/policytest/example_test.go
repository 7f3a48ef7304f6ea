package policytest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/policy/policytest"
)

func Example() {
	dir, _ := os.MkdirTemp("", "readme")
	defer os.RemoveAll(dir)
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("# x\n\n```yaml\nrules:\n  - {name: big, if: msg.size > 1000000, reject: true}\n```\n"), 0o644)
	specs := policytest.CompileReadme(&testing.T{}, readme, nil)
	fmt.Println(len(specs), specs[0].Name)
	// Output: 1 big
}
