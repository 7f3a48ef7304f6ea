package migrate_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/imapd"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/store"
)

// TestImapSourceKeepsZones: the zone of each INTERNALDATE the source reports is kept
// (issue 20; RFC 3501 §2.3.3). Dovecot's maildir and mbox report every date in the
// server's zone, so the source here is portcullis's own IMAP server, which keeps them.
func TestImapSourceKeepsZones(t *testing.T) {
	ctx := context.Background()
	dates := []string{"03-Feb-2001 04:05:06 +1400", "02-Feb-2001 20:00:00 -1200", "31-Dec-2023 23:59:59 +0530"}
	srcStore := mailboxtest.Store(t, store.Config{})
	u, err := srcStore.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dates {
		tm, err := time.Parse("02-Jan-2006 15:04:05 -0700", d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Append(ctx, "INBOX", strings.NewReader("Subject: "+d+"\r\n\r\nbody\r\n"), nil, tm); err != nil {
			t.Fatal(err)
		}
	}
	u.Release()
	tc, _ := mailboxtest.Cert(t)
	srv, err := imapd.New(imapd.Config{TLSConfig: tc}, srcStore, mailboxtest.Users, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := mailboxtest.Serve(t, srv)

	src, err := migrate.DialImap(ctx, migrate.ImapConfig{Addr: addr, Security: "starttls", TLSConfig: &tls.Config{InsecureSkipVerify: true},
		User: "alice@example.org", Password: "secret pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, tg := newTarget(t)
	res, err := migrate.Run(ctx, src, tg, openState(t), migrate.Options{Source: "imap", TargetUser: "alice@example.org"})
	if err != nil || res.Totals().Copied != 3 || res.Totals().Err != nil {
		t.Fatalf("run: %+v %v", res.Totals(), err)
	}
	tu, err := s.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer tu.Release()
	_, ms, err := tu.Messages(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.InternalDate.Format("02-Jan-2006 15:04:05 -0700"))
	}
	if !slices.Equal(got, dates) {
		t.Fatalf("target internal dates %q, want %q", got, dates)
	}
}
