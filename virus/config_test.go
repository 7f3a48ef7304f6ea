package virus_test

import (
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/policy/policytest"
	"github.com/portcullis-mail/portcullis/virus"
)

// TestReadmeConfig decodes the README's config block, strictly, into Config.
func TestReadmeConfig(t *testing.T) {
	blocks := policytest.YAMLBlocks(policytest.ReadmeSection(t, "README.md", "## Config"))
	if len(blocks) == 0 {
		t.Fatal("README.md has no config block")
	}
	var doc struct {
		Policies map[string]struct {
			Clamd virus.Config `yaml:"clamd"`
		} `yaml:"policies"`
	}
	if err := policytest.DecodeStrict(blocks[0], &doc); err != nil {
		t.Fatal(err)
	}
	cfg := doc.Policies["clamav"].Clamd
	if len(cfg.Addrs) != 2 || cfg.Timeout != 2*time.Minute || cfg.WriteTimeout != 10*time.Second || cfg.Cooldown != 10*time.Second {
		t.Fatalf("decoded %+v", cfg)
	}
	if _, err := virus.NewClient(cfg); err != nil {
		t.Fatal(err)
	}
}
