package lmtp_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// brokenLMTP is an LMTP server that accepts every RCPT and, after the data, sends the
// given replies (one per recipient, in RCPT order) and then drops the connection without
// the rest. No Dovecot can be made to break between two of its per-recipient replies,
// so this scripted server plays the store.
func brokenLMTP(t *testing.T, replies ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "220 store LMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(line); {
					case strings.HasPrefix(cmd, "LHLO"):
						fmt.Fprintf(c, "250-store\r\n250 PIPELINING\r\n")
					case strings.HasPrefix(cmd, "DATA"):
						fmt.Fprintf(c, "354 go ahead\r\n")
						for line != ".\r\n" {
							if line, err = r.ReadString('\n'); err != nil {
								return
							}
						}
						for _, rep := range replies {
							fmt.Fprintf(c, "%s\r\n", rep)
						}
						return // broken before the remaining replies
					default:
						fmt.Fprintf(c, "250 2.0.0 ok\r\n")
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestBrokenAfterSomeReplies: RFC 2033 §4.2 gives one reply per accepted recipient after
// the data. When the connection breaks after some of them, each answered recipient keeps
// its own reply and each unanswered one is deferred with a reason of its own (the
// connection was lost before its reply), never another recipient's 550.
func TestBrokenAfterSomeReplies(t *testing.T) {
	rcpts := []string{"ann@example.test", "bob@example.test", "cat@example.test"}
	msg := message("broken")
	c, _ := lmtp.New(lmtp.Config{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// ann refused, bob delivered, no reply for cat.
	dest := brokenLMTP(t, "550 5.1.1 <ann@example.test> User doesn't exist", "250 2.0.0 <bob@example.test> Saved")
	res, err := c.Deliver(ctx, dest, "a@example.net", rcpts, bytes.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Errorf("one recipient delivered, yet an error for the whole transaction: %v", err)
	}
	if r := res[0]; r.Status != lmtp.Permanent || !strings.HasPrefix(r.Reply, "550 5.1.1 ") || !strings.Contains(r.Reply, "ann@") {
		t.Errorf("ann: %v %q, want her own 550", r.Status, r.Reply)
	}
	if r := res[1]; r.Status != lmtp.Delivered || !strings.Contains(r.Reply, "bob@") {
		t.Errorf("bob: %v %q, want delivered", r.Status, r.Reply)
	}
	unanswered(t, res[2])

	// ann refused, then nothing: bob and cat are deferred, each with its own reason, and
	// the transaction's error does not quote ann's reply.
	dest = brokenLMTP(t, "550 5.1.1 <ann@example.test> User doesn't exist")
	res, err = c.Deliver(ctx, dest, "a@example.net", rcpts, bytes.NewReader(msg), int64(len(msg)))
	if r := res[0]; r.Status != lmtp.Permanent || !strings.Contains(r.Reply, "ann@") {
		t.Errorf("ann: %v %q, want her own 550", r.Status, r.Reply)
	}
	unanswered(t, res[1])
	unanswered(t, res[2])
	if err == nil || strings.Contains(err.Error(), "550") || strings.Contains(err.Error(), "ann@") {
		t.Errorf("transaction error %v, want the lost connection, not ann's reply", err)
	}
}

func unanswered(t *testing.T, r lmtp.RcptResult) {
	t.Helper()
	other := strings.Contains(r.Reply, "ann@") || (r.Rcpt != "bob@example.test" && strings.Contains(r.Reply, "bob@"))
	if r.Status != lmtp.Temporary || r.Code == 550 || strings.Contains(r.Reply, "550") || other {
		t.Errorf("%s: %v %q (%v), want deferred with a reason of its own", r.Rcpt, r.Status, r.Reply, r.Err)
	}
	if !strings.HasPrefix(r.Reply, "451 4.4.2 ") || !strings.Contains(r.Reply, "<"+r.Rcpt+">") {
		t.Errorf("%s: reply %q, want 451 4.4.2 naming the recipient", r.Rcpt, r.Reply)
	}
}
