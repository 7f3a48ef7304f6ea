package smtpconn

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession plays a server whose replies are the fuzz input (one reply per line the
// client sends, in order) against an SMTP or LMTP session: whatever a hostile server
// answers, the client neither panics nor hangs, and returns one result per recipient.
func FuzzSession(f *testing.F) {
	f.Add("220 hi\n250-x\n250 SIZE 10\n250 ok\n250 ok\n550 5.1.1 no\n354 go\n250 2.0.0 ok\n", false)
	f.Add("220 hi\n250-x\n250 PIPELINING\n250 ok\n250 ok\n250 ok\n354 go\n250 ok\n452 4.2.2 full\n", true)
	f.Add("220 hi\n250 x\n450 try later\n250 reset\n", false)
	f.Add("421 bye\n", false)
	f.Add("220 hi\n250 x\n250 ok\n250 ok\n354\n", true)
	f.Add("220-a\n220 b\n250-x\n250-SMTPUTF8\n250 8BITMIME\n250 2.1.0 ok\n251 ok\n354 go\n299 odd\n", false)
	f.Fuzz(func(t *testing.T, replies string, lmtp bool) {
		if len(replies) > 4096 {
			return
		}
		cli, srv := net.Pipe()
		defer cli.Close()
		// The server writes every reply at once and drains what the client sends, then
		// hangs up: replies arrive whenever the client reads them.
		go func() {
			srv.SetDeadline(time.Now().Add(2 * time.Second))
			go io.Copy(io.Discard, srv)
			for _, l := range strings.SplitAfter(replies, "\n") {
				if _, err := srv.Write([]byte(strings.TrimSuffix(l, "\n") + "\r\n")); err != nil {
					break
				}
			}
			srv.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		opts := Options{LMTP: lmtp, LocalName: "client.test", CommandTimeout: time.Second, DataTimeout: time.Second}
		opts.defaults()
		s, err := openConn(ctx, cli, "fuzz", opts)
		if err != nil {
			return
		}
		rcpts := []string{"a@example.test", "b@example.test", "a@example.test"}
		res := s.Send(ctx, "s@example.test", rcpts, bytes.NewReader([]byte("Subject: x\r\n\r\n.hi\r\n")), 20, false)
		if len(res) != len(rcpts) {
			t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
		}
		for i, r := range res {
			if r.Rcpt != rcpts[i] || (r.Status != Delivered && r.Reply == "") {
				t.Fatalf("result %d: %+v", i, r)
			}
		}
	})
}
