package smtpd_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/smtpd"
)

// The config block of README.md decodes strictly into Config.
func TestReadmeConfig(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Config\n")
	_, rest, ok1 := strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok1 || !ok2 {
		t.Fatal("no yaml block under ## Config in README.md")
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(block)))
	dec.KnownFields(true)
	var cfg smtpd.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.CommandTimeout != 5*time.Minute || len(cfg.Listeners) != 7 || cfg.Listeners[6].Mode != smtpd.ModeLMTP || !cfg.Listeners[3].ProxyProtocol || len(cfg.Listeners[4].XClientFrom) != 1 || cfg.MaxMessageSize != 32<<20 {
		t.Errorf("decoded %+v", cfg)
	}
	if _, err := smtpd.New(cfg, smtpd.Deps{Spool: newTestQueue(t), Auth: users{}, Local: nopLocal{}}); err != nil {
		t.Errorf("New: %v", err)
	}
	if _, err := smtpd.New(cfg, smtpd.Deps{Spool: newTestQueue(t), Local: nopLocal{}}); err == nil {
		t.Errorf("submission listeners without an authenticator: no error")
	}
}
