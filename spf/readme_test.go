package spf

import (
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles the rule examples of README.md against this policy's facts.
func TestReadmeRules(t *testing.T) {
	p, err := New(Config{}, Deps{Resolver: dnstest.New(t).Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	policytest.CompileReadme(t, "README.md", map[string]policy.Policy{"spf": p})
}
