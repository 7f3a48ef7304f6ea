package imapd

import (
	"strings"
	"testing"
	"time"
)

// WITHIN (RFC 5032): OLDER and YOUNGER compare the internal date to the second, not the
// day; they combine with SINCE (which go-imap's criteria would otherwise merge into one
// day), NOT and OR, and in UID SEARCH. Before, the keys were parsed but not offered.
func TestSearchWithin(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r.ok("CAPABILITY"); !strings.Contains(lines[0], " WITHIN ") {
		t.Fatalf("WITHIN not announced: %q", lines)
	}
	now := time.Now()
	for _, ago := range []time.Duration{50 * time.Hour, 2 * time.Hour, 30 * time.Minute, 0} {
		d := now.Add(-ago).In(time.FixedZone("", 5*3600)).Format("02-Jan-2006 15:04:05 -0700")
		r.ok("APPEND INBOX \"%s\" {12+}\r\nSubject: x\r\n", d)
	}
	r.ok("SELECT INBOX")
	today := now.UTC().Add(-3 * time.Hour).Format("2-Jan-2006") // a day both recent ones are on or after
	for q, want := range map[string]string{
		"YOUNGER 3600":                   "3 4",
		"OLDER 3600":                     "1 2",
		"OLDER 86400":                    "1",
		"NOT YOUNGER 7300":               "1",
		"OR OLDER 86400 YOUNGER 60":      "1 4",
		"SINCE " + today + " OLDER 3600": "2",
		"YOUNGER 3600 SINCE " + today:    "3 4",
		"YOUNGER 4294967295":             "1 2 3 4",
	} {
		lines := r.ok("SEARCH %s", q)
		if len(lines) != 1 || lines[0] != strings.TrimSpace("* SEARCH "+want) {
			t.Errorf("SEARCH %s = %q, want %s", q, lines, want)
		}
	}
	if lines := r.ok("UID SEARCH RETURN (COUNT) YOUNGER 3600"); len(lines) != 1 || !strings.HasSuffix(lines[0], "UID COUNT 2") {
		t.Errorf("UID SEARCH RETURN (COUNT) YOUNGER: %q", lines)
	}
	if _, st := r.cmd("SEARCH OLDER 0"); !strings.HasPrefix(st, "BAD") {
		t.Errorf("OLDER 0: %s", st)
	}
}
