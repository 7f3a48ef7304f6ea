package delivery

import (
	"context"
	"io"
	"path/filepath"
	"strings"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

// testMaildir is the local Transport of the queue manager's tests: each recipient gets a
// maildir under root (root/LOCAL@DOMAIN, the address lower-cased and without its "+"
// extension), so a test can count
// what arrived without the mail store. users, when not empty, are the addresses that
// exist; mail to others fails with 550 5.1.1. The product's local delivery is
// delivery/local, tested with this manager through delivery/dispatch.
type testMaildir struct {
	root  string
	users map[string]bool
}

func newTestMaildir(root string, users ...string) *testMaildir {
	m := &testMaildir{root: root, users: map[string]bool{}}
	for _, u := range users {
		m.users[strings.ToLower(u)] = true
	}
	return m
}

// mailbox returns the user that receives mail for addr.
func mailbox(addr string) string {
	local, domain, _ := address.Split(strings.ToLower(addr))
	return address.StripExtension(local, "+") + "@" + domain
}

// Path returns the maildir of addr.
func (m *testMaildir) Path(addr string) (maildir.Dir, error) {
	return maildir.Dir(filepath.Join(m.root, mailbox(addr))), nil
}

func (m *testMaildir) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []Result {
	body, err := io.ReadAll(msg)
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
		switch {
		case err != nil:
			out[i].Err = err
		case len(m.users) > 0 && !m.users[mailbox(r)]:
			out[i].Err = Permanent("550 5.1.1 <"+r+">: no such user", nil)
		case strings.ContainsAny(r, "/\x00") || strings.HasPrefix(r, "."):
			out[i].Err = Permanent("550 5.1.3 bad destination mailbox address", nil)
		default:
			d, _ := m.Path(r)
			if err := d.Create(); err != nil {
				out[i].Err = err
				continue
			}
			hdr := "Return-Path: <" + env.From + ">\r\nDelivered-To: " + r + "\r\n"
			if _, err := d.Deliver(io.MultiReader(strings.NewReader(hdr), strings.NewReader(string(body)))); err != nil {
				out[i].Err = err
				continue
			}
			out[i].Reply = "250 2.0.0 delivered to mailbox"
		}
	}
	return out
}

// testRouter routes example.test to local and every other domain to remote; without
// remote, mail to other domains fails with 554 5.4.4.
func testRouter(local, remote Transport) Router {
	return RouterFunc(func(ctx context.Context, rcpt string) (Route, error) {
		d := address.Domain(rcpt)
		switch {
		case d == "example.test":
			return Route{Transport: local, Dest: "local"}, nil
		case remote != nil:
			return Route{Transport: remote, Dest: "remote:" + d}, nil
		}
		return Route{}, Permanent("554 5.4.4 no route to "+d, nil)
	})
}
