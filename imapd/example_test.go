package imapd_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/imapd"
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
	dir, _ := os.MkdirTemp("", "imapd")
	defer os.RemoveAll(dir)
	st, _ := store.New(store.Config{Dir: dir})
	defer st.Close()
	st.Deliver(context.Background(), "alice@example.org", "INBOX", strings.NewReader("Subject: hello\r\n\r\nhi\r\n"), nil)

	// Trusted allows LOGIN without TLS: only for loopback. Public listeners set TLSConfig
	// (STARTTLS) or pass a tls.NewListener (port 993).
	srv, err := imapd.New(imapd.Config{Trusted: true}, st, oneUser{}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	c, _ := imapclient.DialInsecure(ln.Addr().String(), nil)
	defer c.Close()
	c.Login("alice@example.org", "secret").Wait()
	sel, _ := c.Select("INBOX", nil).Wait()
	fmt.Println(sel.NumMessages)
	// Output: 1
}
