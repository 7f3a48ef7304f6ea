package pop3d

import (
	"context"
	"os"
	"testing"

	"github.com/portcullis-mail/portcullis/store"
)

// A message whose file fails to read after the +OK is not ended with the terminating
// dot (RFC 1939 §3): the client would take what came before as the whole message and
// may DELE it. The session ends instead, without UPDATE.
func TestRetrReadErrorNotTerminated(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "bob@example.org", msg2)
	u, err := e.store.Open(context.Background(), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, msgs, err := u.Messages(context.Background(), store.Inbox)
	if err != nil || len(msgs) != 1 {
		t.Fatal(err, len(msgs))
	}
	f, err := u.Open(mb, msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	path := f.Name()
	f.Close()
	u.Release()
	c := dial(t, e.addr)
	c.cmd("USER bob@example.org", "+OK")
	c.cmd("PASS pw2", "+OK")
	// A directory in the message's place opens, then fails to read (EISDIR).
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	c.cmd("RETR 1", "+OK")
	for {
		l, err := c.r.ReadLine()
		if err != nil {
			break // the connection closed
		}
		if l == "." {
			t.Fatalf("a message that failed to read ended with the terminating dot")
		}
	}
}
