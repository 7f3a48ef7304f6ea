package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/directory"
)

type fuzzDir struct{}

func (fuzzDir) Lookup(_ context.Context, addr string) (directory.User, error) {
	switch addr {
	case "a@example.org":
		return directory.User{Address: addr, MailHost: "closed"}, nil
	case "m@example.org":
		return directory.User{Address: addr, MailHost: "closed", State: directory.StateMoving}, nil
	}
	return directory.User{}, directory.ErrNotFound
}

type noAuth struct{}

func (noAuth) Authenticate(context.Context, string, string, netip.Addr) (string, error) {
	return "", io.EOF
}

// FuzzLMTPSession: whatever a client sends, the session answers and ends (no panic, no
// hang), every reply a well-formed SMTP reply.
func FuzzLMTPSession(f *testing.F) {
	f.Add("LHLO x\r\nMAIL FROM:<b@c>\r\nRCPT TO:<a@example.org>\r\nDATA\r\nQUIT\r\n")
	f.Add("LHLO x\r\nMAIL FROM: <> SIZE=1\r\nRCPT TO:<m@example.org> NOTIFY=NEVER\r\nRCPT TO:<z@example.org>\r\nRSET\r\nNOOP\r\nVRFY a\r\n")
	f.Add("MAIL\r\nRCPT TO:a\r\nLHLO\r\n\r\n" + string(make([]byte, 3000)))
	f.Add("LHLO x\r\nMAIL FROM:<> SIZE=99999999999999999999999\r\nMAIL FROM:<> SIZE=\r\nMAIL FROM:<> SIZE=+1 SIZE=-0\r\n")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	closed.Close()
	s, err := New(Config{TLSConfig: &tls.Config{}, HealthInterval: -1, ConnectTimeout: time.Second,
		Backends: map[string]Backend{"closed": {LMTP: closed.Addr().String()}}},
		Deps{Auth: noAuth{}, Directory: fuzzDir{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			l := &lmtpSession{s: s, conn: server, r: bufio.NewReaderSize(server, 4096), w: bufio.NewWriter(server)}
			l.run()
			server.Close()
		}()
		go func() {
			io.WriteString(client, in)
			client.Close() // the end of input ends the session
		}()
		r := bufio.NewReader(client)
		for {
			line, err := readLine(r, 64<<10)
			if err != nil {
				break
			}
			if len(line) < 3 || line[0] < '2' || line[0] > '5' {
				t.Fatalf("malformed reply %q", line)
			}
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the session did not end")
		}
	})
}
