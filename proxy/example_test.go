package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/proxy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// A proxy whose only back-end is down: a user who logs in gets a temporary error, so
// that the client retries later, never a session on another back-end.
func Example() {
	dir, _ := os.MkdirTemp("", "proxy-example")
	defer os.RemoveAll(dir)
	cert, err := smtpd.SelfSignedCertificate(dir, "proxy.example.test")
	if err != nil {
		panic(err)
	}
	px, err := proxy.New(proxy.Config{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Backends:  map[string]proxy.Backend{"store1": {POP3: "127.0.0.1:1"}}, // nothing listens there
	}, proxy.Deps{
		Auth:      mailboxtest.Users,
		Directory: dirMap{"alice@example.org": directory.User{Address: "alice@example.org", MailHost: "store1"}},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer px.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go px.ServePOP3(ln, true)

	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	line := func() string { l, _ := r.ReadString('\n'); return strings.TrimSpace(l) }
	fmt.Println(line())
	fmt.Fprintf(c, "USER alice@example.org\r\nPASS secret pw\r\n")
	fmt.Println(line())
	fmt.Println(line())
	// Output:
	// +OK localhost POP3 proxy ready
	// +OK send PASS
	// -ERR [SYS/TEMP] mailbox temporarily unavailable, try again later
}
