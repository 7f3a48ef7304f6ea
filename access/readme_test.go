package access

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policy/policytest"
)

// TestReadmeRules compiles every rule example of README.md with the real rule compiler
// against real instances of the four checks it names.
func TestReadmeRules(t *testing.T) {
	dir := t.TempDir()
	mk := func(file string, cfg func(c *Config, spec string)) policy.Policy {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte("192.0.2.0/24 REJECT\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var c Config
		cfg(&c, "cidr:"+path)
		p, err := New(c, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pols := map[string]policy.Policy{
		"clients":    mk("c", func(c *Config, s string) { c.CheckClientAccess = s }),
		"helos":      mk("h", func(c *Config, s string) { c.CheckHeloAccess = s }),
		"senders":    mk("s", func(c *Config, s string) { c.CheckSenderAccess = s }),
		"recipients": mk("r", func(c *Config, s string) { c.CheckRecipientAccess = s }),
	}
	if specs := policytest.CompileReadme(t, "README.md", pols); len(specs) < 8 {
		t.Errorf("%d rules in README.md, expected at least 8", len(specs))
	}
}
