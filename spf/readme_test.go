package spf

import (
	"os"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
)

// readmeRules returns the YAML block under "## Rules" of README.md.
func readmeRules(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "## Rules")
	if !ok {
		t.Fatal("README.md has no Rules section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md Rules section has no yaml block")
	}
	return []byte(block)
}

// TestReadmeRules compiles the rule examples of README.md against this policy's facts.
func TestReadmeRules(t *testing.T) {
	p, err := New(Config{}, dnstest.New(t).Resolver())
	if err != nil {
		t.Fatal(err)
	}
	rules, err := policy.ParseRules(readmeRules(t), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Compile(rules, map[string]policy.Policy{"spf": p}, nil); err != nil {
		t.Fatal(err)
	}
}
