package imapd

import (
	"strings"
	"testing"
)

// LIST "" "" answers the hierarchy delimiter and the root name (RFC 3501 §6.3.8), also
// when imapserver has dropped the empty pattern before the session sees it (issue 16
// item 1).
func TestListEmptyPatternGivesDelimiter(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, c := range []string{`LIST "" ""`, `LIST INBOX ""`} {
		lines := r.ok("%s", c)
		if len(lines) != 1 || lines[0] != `* LIST (\Noselect) "/" ""` {
			t.Errorf("%s: %q, want one `* LIST (\\Noselect) \"/\" \"\"`", c, lines)
		}
	}
	lines := r.ok(`LIST "" "*"`)
	if len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "INBOX") {
		t.Errorf(`LIST "" "*" after LIST "" "": %q`, lines)
	}
}
