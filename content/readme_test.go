package content

import (
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles every rule example of README.md with the real rule compiler
// against a real content policy, under its own name (content.attachments) and, as the
// binary's built-in instance, extending msg (msg.attachments).
func TestReadmeRules(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	specs := policytest.CompileReadme(t, "README.md", map[string]policy.Policy{"content": policy.ExtendMsg(p)})
	if len(specs) < 5 {
		t.Errorf("%d rules in README.md, want at least 5", len(specs))
	}
}
