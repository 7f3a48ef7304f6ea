package web

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseLogFilter: any query string gives a filter or an error, never a panic, and
// never a filter wider than the user's scope (parseLogFilter does not set it).
func FuzzParseLogFilter(f *testing.F) {
	for _, s := range []string{"", "address=example.org&verdict=blocked", "since=2026-01-02&until=2026-01-01T10:00",
		"client=192.0.2.0/24&sort=score", "verdict=%00", "since=9999-99-99", "cursor=eyJrIjoxLCJpIjoyfQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		_, df, err := parseLogFilter(v)
		if err != nil {
			return
		}
		if df.Scope.All || len(df.Scope.Recipients) > 0 || df.Scope.AuthUser != "" {
			t.Fatalf("the query string set the scope: %+v", df.Scope)
		}
		if len(df.Address) > 320 || len(df.Subject) > 320 {
			t.Fatal("a field beyond its bound")
		}
	})
}

// FuzzTicket: no input but a ticket the server signed logs anyone in.
func FuzzTicket(f *testing.F) {
	k, err := parseKeys("fuzz", []byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{keys: k, now: time.Now}
	good := s.sign(ticket{user: "alice@example.test", id: "id", rcpt: "alice@example.test", exp: time.Now().Add(time.Hour).Unix(), nonce: "n"})
	f.Add(good)
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tk string) {
		if _, ok := s.checkTicket(tk); ok && tk != good {
			t.Fatalf("forged ticket accepted: %q", tk)
		}
	})
}
