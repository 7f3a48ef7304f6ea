package smtpd_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/smtpd/smtptest"
)

// recorder keeps what each DecisionEvent said, as text (the transaction is valid during
// the call only).
type recorder struct {
	mu     sync.Mutex
	events []string
	conns  []string
}

func (r *recorder) RecordDecision(ev *smtpd.DecisionEvent) {
	subj := ""
	if ev.Tx.Message != nil {
		subj = ev.Tx.Message.Header.Get("Subject")
	}
	s := fmt.Sprintf("at=%s stage=%s verdict=%s rule=%s category=%s rcpts=%s from=%s subject=%q queued=%t msg=%t size=%t reply=%s",
		ev.At, ev.Decision.Stage, ev.Decision.Verdict, ev.Decision.Rule, ev.Decision.Category,
		strings.Join(ev.Rcpts, ","), ev.Tx.Envelope.From.String(), subj, ev.QueueID != "", ev.MsgID != "", ev.Size > 0, ev.Reply)
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) Connected(c *policy.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, "connect "+c.IP.String())
	r.mu.Unlock()
}

func (r *recorder) Disconnected(c *policy.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, "disconnect "+c.IP.String())
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func TestDecisionRecorder(t *testing.T) {
	for _, delay := range []bool{false, true} {
		t.Run(fmt.Sprint("delay_reject=", delay), func(t *testing.T) {
			rec := &recorder{}
			ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
				c.DelayReject = &delay
				d.Decisions = rec
			})
			addr := ts.addr("mx")
			expect := func(want ...string) {
				t.Helper()
				got := rec.take()
				if len(got) != len(want) {
					t.Fatalf("events:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
				}
				for i, w := range want {
					if !strings.HasPrefix(got[i], w) {
						t.Errorf("event %d:\n got %s\nwant %s...", i, got[i], w)
					}
				}
			}

			c := dialFrom(t, addr, 2)
			if delay {
				c.Expect(t, "", 220)
				c.Expect(t, "EHLO x.example.net", 250)
				c.Expect(t, "MAIL FROM:<a@example.net>", 250)
				c.Expect(t, "RCPT TO:<bob@example.test>", 554)
				expect("at=rcpt stage=connect verdict=reject rule=connect-block category=connect-block rcpts=bob@example.test from=a@example.net")
			} else {
				c.Expect(t, "", 554)
				expect("at=connect stage=connect verdict=reject rule=connect-block category=connect-block rcpts= from=")
			}
			c.Close()

			c = dial(t, addr)
			c.Expect(t, "EHLO client.example.net", 250)
			if !delay {
				c.Expect(t, "MAIL FROM:<x@spammer.test>", 553)
				expect("at=mail stage=mail verdict=reject rule=mail-block category=mail-block rcpts= from=x@spammer.test")
			}
			c.Expect(t, "MAIL FROM:<a@example.net>", 250)
			c.Expect(t, "RCPT TO:<blocked@example.test>", 550)
			c.Expect(t, "RCPT TO:<later@example.test>", 450)
			c.Expect(t, "RCPT TO:<someone@elsewhere.test>", 554)
			c.Expect(t, "RCPT TO:<bob@example.test>", 250)
			c.Expect(t, "RCPT TO:<carol@example.test>", 250)
			expect(
				"at=rcpt stage=rcpt verdict=reject rule=rcpt-block category=rcpt-block rcpts=blocked@example.test from=a@example.net",
				"at=rcpt stage=rcpt verdict=tempfail rule=rcpt-later category=rcpt-later rcpts=later@example.test",
				"at=rcpt stage=rcpt verdict=reject rule= category=relay rcpts=someone@elsewhere.test",
			)
			c.Expect(t, "DATA", 354)
			c.Expect(t, smtptest.Message("a@example.net", "bob@example.test", "SPAM", 100)+".", 554)
			expect(`at=data stage=data verdict=reject rule=data-spam category=data-spam rcpts=bob@example.test,carol@example.test from=a@example.net subject="SPAM" queued=false msg=true size=true reply=554 5.7.9 spam refused`)

			for _, s := range []struct{ subject, want string }{
				{"hello", `at=data stage=data verdict=accept rule= category= rcpts=bob@example.test from=a@example.net subject="hello" queued=true msg=true size=true reply=250 2.0.0 OK queued as `},
				{"quarantine me", `at=data stage=data verdict=quarantine rule=data-quarantine category=data-quarantine rcpts=bob@example.test from=a@example.net subject="quarantine me" queued=true`},
				{"discard me", `at=data stage=data verdict=discard rule=data-discard category=data-discard rcpts=bob@example.test from=a@example.net subject="discard me" queued=false msg=true size=true reply=250 2.0.0 OK id=`},
			} {
				c.Transaction(t, "a@example.net", []string{"bob@example.test"}, smtptest.Message("a@example.net", "bob@example.test", s.subject, 100))
				c.Expect(t, "", 250)
				expect(s.want)
			}
			c.Expect(t, "QUIT", 221)
			c.Close()
			waitFor(t, "the disconnects", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return len(rec.conns) == 4
			})
			rec.mu.Lock()
			slices.Sort(rec.conns)
			if got := strings.Join(rec.conns, ","); got != "connect 127.0.0.1,connect 127.0.0.2,disconnect 127.0.0.1,disconnect 127.0.0.2" {
				t.Errorf("connections: %s", got)
			}
			rec.mu.Unlock()
		})
	}
}
