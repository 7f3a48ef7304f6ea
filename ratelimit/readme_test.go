package ratelimit_test

import (
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles the rule examples of README.md.
func TestReadmeRules(t *testing.T) {
	if specs := policytest.CompileReadme(t, "README.md", map[string]policy.Policy{}); len(specs) < 2 {
		t.Errorf("%d rules in README.md", len(specs))
	}
}
