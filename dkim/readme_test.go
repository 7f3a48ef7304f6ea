package dkim

import (
	"testing"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles the rule examples of README.md against this policy's facts.
func TestReadmeRules(t *testing.T) {
	p, err := New(Config{}, Deps{Resolver: dnstest.New(t).Resolver()})
	policytest.CompileReadmeOf(t, "dmarc", p, err)
}
