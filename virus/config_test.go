package virus_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/virus"
)

// TestReadmeConfig decodes the README's config block, strictly, into Config.
func TestReadmeConfig(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), "## Config")
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md has no config block")
	}
	var doc struct {
		Policies map[string]struct {
			Clamd virus.Config `yaml:"clamd"`
		} `yaml:"policies"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(block)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
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
