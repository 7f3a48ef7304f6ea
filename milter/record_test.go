package milter_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

// decisions records what Decided was told, as text.
type decisions struct {
	mu  sync.Mutex
	out []string
}

func (d *decisions) Decided(tx *policy.Transaction, dec policy.Decision, reply string, rcpts []string) {
	subj := ""
	if tx.Message != nil {
		subj = tx.Message.Header.Get("Subject")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.out = append(d.out, fmt.Sprintf("%s %s %s stage=%s verdict=%s rule=%s rcpts=%v subject=%q reply=%s",
		tx.Conn.Listener, tx.Conn.IP, tx.Envelope.From.String(), dec.Stage, dec.Verdict, dec.Rule, rcpts, subj, reply))
}

// TestDecisionsRecorded: the milter server hands the decision log every refusal (at
// MAIL, RCPT, end of message) and, at end of message, the verdict of an accepted,
// discarded or quarantined message for each recipient.
func TestDecisionsRecorded(t *testing.T) {
	rec := &decisions{}
	addr, _ := startMilterRecording(t, "127.0.0.1:0", rec)
	c, err := milter.NewClient(milter.ClientConfig{Addr: "inet:" + addr, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("198.51.100.7"), Port: 4242, HELO: "client.test"})
	s, _ := c.Open(ctx, tx)
	defer s.Close()
	s.Helo(ctx, tx)
	tx.Envelope.From = address.Parse("spammer@bad.test")
	s.Mail(ctx, tx)
	for _, subject := range []string{"fine", "reject me", "drop", "hold"} {
		tx.Reset()
		tx.Envelope.From = address.Parse("a@sender.test")
		s.Mail(ctx, tx)
		for _, r := range []string{"busy@remote.test", "alice@remote.test", "bob@remote.test"} {
			tx.Rcpt = address.Parse(r)
			if d := s.Rcpt(ctx, tx); !d.Terminal() {
				tx.Envelope.Rcpts = append(tx.Envelope.Rcpts, tx.Rcpt)
			}
		}
		s.Message(ctx, tx, []byte("Subject: "+subject+"\r\n\r\nx\r\n"))
	}
	rec.mu.Lock()
	got := rec.out
	rec.mu.Unlock()
	want := []string{
		`milter 198.51.100.7 spammer@bad.test stage=mail verdict=reject rule=spammer rcpts=[] subject="" reply=550 5.7.1 go away`,
		`milter 198.51.100.7 a@sender.test stage=rcpt verdict=tempfail rule=busy rcpts=[busy@remote.test] subject="" reply=451 4.7.1 try later please`,
		`milter 198.51.100.7 a@sender.test stage=data verdict=continue rule= rcpts=[alice@remote.test bob@remote.test] subject="fine" reply=accept`,
		`milter 198.51.100.7 a@sender.test stage=rcpt verdict=tempfail rule=busy rcpts=[busy@remote.test] subject="" reply=451 4.7.1 try later please`,
		`milter 198.51.100.7 a@sender.test stage=data verdict=reject rule=reject rcpts=[alice@remote.test bob@remote.test] subject="reject me" reply=554 5.7.1 content refused`,
		`milter 198.51.100.7 a@sender.test stage=rcpt verdict=tempfail rule=busy rcpts=[busy@remote.test] subject="" reply=451 4.7.1 try later please`,
		`milter 198.51.100.7 a@sender.test stage=data verdict=discard rule=drop rcpts=[alice@remote.test bob@remote.test] subject="drop" reply=discard`,
		`milter 198.51.100.7 a@sender.test stage=rcpt verdict=tempfail rule=busy rcpts=[busy@remote.test] subject="" reply=451 4.7.1 try later please`,
		`milter 198.51.100.7 a@sender.test stage=data verdict=quarantine rule=hold rcpts=[alice@remote.test bob@remote.test] subject="hold" reply=hold`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
