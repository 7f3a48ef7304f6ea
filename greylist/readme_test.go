package greylist

import (
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles every rule example of README.md against real instances.
func TestReadmeRules(t *testing.T) {
	a, err := New(Config{}, Deps{Store: NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Stage: "data"}, Deps{Store: NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	if specs := policytest.CompileReadme(t, "README.md", map[string]policy.Policy{"grey": a, "shared_grey": b}); len(specs) < 2 {
		t.Errorf("%d rules in README.md", len(specs))
	}
}
