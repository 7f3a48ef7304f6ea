package imapd

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/store"
)

var internalDateRe = regexp.MustCompile(`INTERNALDATE "([^"]*)"`)

// appendDated sends APPEND with a date-time and a synchronising literal.
func (r *raw) appendDated(mailbox, date, body string) {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	fmt.Fprintf(r.conn, "%s APPEND %s %q {%d}\r\n", tag, mailbox, date, len(body))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		r.t.Fatalf("APPEND: want continuation, got %q", l)
	}
	fmt.Fprintf(r.conn, "%s\r\n", body)
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("APPEND %q: %s", date, l)
			}
			return
		}
	}
}

// TestInternalDateKeepsZone: INTERNALDATE is a date-time with its zone (RFC 3501 §2.3.3,
// RFC 9051 §2.3.3); what APPEND gave comes back as given, also once the store has been
// closed and reopened, and SEARCH ON/BEFORE/SINCE compare the date as written, "disregarding
// time and timezone" (RFC 3501 §6.4.4), not the date in the server's zone.
func TestInternalDateKeepsZone(t *testing.T) {
	cfg := Config{}
	e := start(t, cfg)
	dates := []string{
		"03-Feb-2001 04:05:06 +1400", // 2001-02-02 14:05:06 UTC
		"02-Feb-2001 20:00:00 -1200", // 2001-02-03 08:00:00 UTC
	}
	r := dialRaw(t, e.addr)
	r.starttls()
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for i, d := range dates {
		r.appendDated("INBOX", d, fmt.Sprintf("Subject: zone %d\r\n\r\nbody", i))
	}
	check := func(r *raw, when string) {
		t.Helper()
		r.ok("SELECT INBOX")
		lines := r.ok("FETCH 1:* (INTERNALDATE)")
		var got []string
		for _, l := range lines {
			// date-day-fixed may be space- or zero-padded (RFC 3501 §9): compare the
			// date-times, zone included, in one spelling.
			m := internalDateRe.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s: FETCH INTERNALDATE: %q", when, l)
			}
			d, err := time.Parse("_2-Jan-2006 15:04:05 -0700", m[1])
			if err != nil {
				t.Fatalf("%s: FETCH INTERNALDATE: %q: %v", when, l, err)
			}
			got = append(got, d.Format("02-Jan-2006 15:04:05 -0700"))
		}
		if !slices.Equal(got, dates) {
			t.Fatalf("%s: FETCH INTERNALDATE: %q, want %q (%q)", when, got, dates, lines)
		}
		for _, q := range []struct{ key, want string }{
			{"ON 3-Feb-2001", "* SEARCH 1"},
			{"ON 2-Feb-2001", "* SEARCH 2"},
			{"BEFORE 3-Feb-2001", "* SEARCH 2"},
			{"SINCE 3-Feb-2001", "* SEARCH 1"},
			{"SINCE 2-Feb-2001 BEFORE 4-Feb-2001", "* SEARCH 1 2"},
		} {
			if lines := r.ok("SEARCH %s", q.key); !slices.Contains(lines, q.want) {
				t.Fatalf("%s: SEARCH %s: want %q, got %q", when, q.key, q.want, lines)
			}
		}
	}
	check(r, "after APPEND")

	// Restart: server and store closed, the store reopened from its directory.
	dir := e.store.Config().Dir
	e.srv.Close()
	e.store.Close()
	st, err := store.New(store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.TLSConfig = e.tls
	srv, err := New(cfg, st, mailboxtest.Users, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r2 := dialRaw(t, mailboxtest.Serve(t, srv))
	r2.starttls()
	r2.ok(`LOGIN alice@example.org "secret pw"`)
	check(r2, "after restart")
}
