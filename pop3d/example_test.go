package pop3d_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/pop3d"
	"github.com/portcullis-mail/portcullis/store"
)

type oneUser struct{}

func (oneUser) Authenticate(_ context.Context, u, p string, _ netip.Addr) (string, error) {
	if u == "alice@example.org" && p == "secret" {
		return u, nil
	}
	return "", auth.ErrInvalid
}

func Example() {
	dir, _ := os.MkdirTemp("", "pop3d")
	defer os.RemoveAll(dir)
	st, _ := store.New(store.Config{Dir: dir})
	defer st.Close()
	// Trusted: a loopback listener where USER/PASS without TLS is acceptable. Public
	// listeners set TLSConfig instead, so clients use STLS.
	srv, err := pop3d.New(pop3d.Config{Hostname: "mail.example.org", Trusted: true}, st, oneUser{}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	fmt.Print(string(buf[:n]))
	// Output: +OK mail.example.org POP3 server ready
}
