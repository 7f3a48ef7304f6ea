package decisionlog_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// What a web page hands to Query comes from the user: a cursor, a client network, an
// address, Subject words. None of it may panic or escape the scope; a bad cursor or
// network is ErrBadFilter.
func FuzzQueryInput(f *testing.F) {
	for _, s := range [][4]string{
		{"", "192.0.2.0/24", "a@b.example", "hello"},
		{"eyJrIjoxLCJpIjoyfQ", "2001:db8::/129", "@example.org", "100% _x_ \\"},
		{"!!", "not-an-ip", "", "' OR 1=1 --"},
		{"eyJrIjoiYSIsImkiOltdfQ", "::ffff:1.2.3.4", "\x00@\xff", "%%%"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(f.TempDir(), "d.db")}, decisionlog.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	l.Add(decisionlog.Record{Recipient: "bob@example.org", Sender: "a@b.example", Subject: "hello", Verdict: "accept"})
	if err := l.Flush(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cursor, client, addr, subject string) {
		for _, sc := range []decisionlog.Scope{{Recipients: []string{"alice@example.org"}}, {All: true}} {
			page, _, err := l.Query(context.Background(), decisionlog.Filter{Scope: sc, Cursor: decisionlog.Cursor(cursor),
				Client: client, Address: addr, Subject: subject})
			if err != nil && !errors.Is(err, decisionlog.ErrBadFilter) {
				t.Fatalf("query: %v", err)
			}
			if !sc.All && len(page) > 0 {
				t.Fatalf("alice's scope saw %+v", page)
			}
		}
	})
}
