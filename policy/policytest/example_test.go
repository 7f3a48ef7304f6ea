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

func TestReadmeSection(t *testing.T) {
	readme := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(readme, []byte("# x\n\n## Config\n\n```yaml\na: 1\n```\n\n### Detail\n\n```yaml\nb: 2\n```\n\n## Rules\n\n```yaml\nc: 3\n```\n"), 0o644)
	got := policytest.YAMLBlocks(policytest.ReadmeSection(t, readme, "## Config"))
	if len(got) != 2 || got[0] != "a: 1\n" || got[1] != "b: 2\n" {
		t.Fatalf("Config section blocks %q", got)
	}
	if got := policytest.YAMLBlocks(policytest.ReadmeSection(t, readme, "")); len(got) != 3 {
		t.Fatalf("whole file blocks %q", got)
	}
	var v struct{ A int }
	if err := policytest.DecodeStrict("a: 1\nb: 2\n", &v); err == nil {
		t.Fatal("DecodeStrict accepted an unknown key")
	}
}
