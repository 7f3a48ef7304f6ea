package headers

import (
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles every rule example of README.md with the real rule compiler
// against real instances of the maps and date policies.
func TestReadmeRules(t *testing.T) {
	maps, err := newPolicy(Config{}, Tables{Header: &Map{Name: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	date, _ := NewDate(DateConfig{})
	specs := policytest.CompileReadme(t, "README.md", map[string]policy.Policy{"maps": maps, "date": date})
	if len(specs) < 7 {
		t.Errorf("%d rules in README.md, expected at least 7", len(specs))
	}
}
