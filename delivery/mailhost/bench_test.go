package mailhost_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
	"github.com/portcullis-mail/portcullis/delivery/mailhost"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/spool"
)

// BenchmarkDeliver measures what routing by mail host adds to an LMTP delivery into a
// real Dovecot, side by side: the LMTP client alone, through the Deliverer with the
// directory's cache (the front-end's configuration), and with every lookup asking
// PostgreSQL.
func BenchmarkDeliver(b *testing.B) {
	ctx := context.Background()
	dc := dovecottest.Start(b, "ann@example.test")
	pg, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(b, pgtest.Start(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Put(ctx, directory.User{Address: "ann@example.test", MailHost: "store1"}); err != nil {
		b.Fatal(err)
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		b.Fatal(err)
	}
	defer lc.Close()
	dest := "unix:" + dc.LMTPSocket()
	hosts := directory.Config{Hosts: map[string]directory.Host{"store1": {LMTP: dest}}}
	msg := "From: x@example.net\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 62)
	env := spool.Envelope{From: "x@example.net"}
	b.Run("lmtp-direct", func(b *testing.B) {
		for b.Loop() {
			res, err := lc.Deliver(ctx, dest, env.From, []string{"ann@example.test"}, strings.NewReader(msg), int64(len(msg)))
			if err != nil || res[0].Status != lmtp.Delivered {
				b.Fatal(err, res)
			}
		}
	})
	for _, c := range []struct {
		name string
		dir  mailhost.Directory
	}{
		{"mailhost-cached", directory.NewCache(pg, time.Minute, 0)},
		{"mailhost-postgres", pg},
	} {
		d, err := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: c.dir, LMTP: lc})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := d.Deliver(ctx, "ann@example.test", env, strings.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliverTen measures a message for ten users of one back-end (a real Dovecot),
// side by side: delivered recipient by recipient (ten LMTP transactions, as front-ends
// did before DeliverAll) and with DeliverAll (one transaction, ten RCPTs).
func BenchmarkDeliverTen(b *testing.B) {
	ctx := context.Background()
	var users []string
	for i := range 10 {
		users = append(users, "u"+strconv.Itoa(i)+"@example.test")
	}
	dc := dovecottest.Start(b, users...)
	pg, err := directory.OpenPostgres(ctx, pgtest.NewDatabase(b, pgtest.Start(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	for _, u := range users {
		if err := pg.Put(ctx, directory.User{Address: u, MailHost: "store1"}); err != nil {
			b.Fatal(err)
		}
	}
	lc, err := lmtp.New(lmtp.Config{LocalName: "fe.example.test"})
	if err != nil {
		b.Fatal(err)
	}
	defer lc.Close()
	hosts := directory.Config{Hosts: map[string]directory.Host{"store1": {LMTP: "unix:" + dc.LMTPSocket()}}}
	d, err := mailhost.New(mailhost.Config{Hosts: hosts}, mailhost.Deps{Directory: directory.NewCache(pg, time.Minute, 0), LMTP: lc})
	if err != nil {
		b.Fatal(err)
	}
	msg := "From: x@example.net\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 62)
	env := spool.Envelope{From: "x@example.net"}
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			for _, u := range users {
				if err := d.Deliver(ctx, u, env, strings.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			for _, r := range d.DeliverAll(ctx, env, users, strings.NewReader(msg)) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
}
