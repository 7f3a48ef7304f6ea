package local

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// userScript is a typical user's script: twenty rules of the kinds webmail writes
// (Roundcube's filters: fileinto by header, flags, a vacation that does not fire here).
var userScript = func() string {
	var b strings.Builder
	b.WriteString("require [\"fileinto\", \"imap4flags\", \"mailbox\", \"envelope\", \"body\", \"relational\", \"comparator-i;ascii-numeric\"];\n")
	for i := range 18 {
		fmt.Fprintf(&b, "if anyof (header :contains \"subject\" \"topic-%d\", address :is \"from\" \"list%d@example.net\") { fileinto :create \"Lists/L%d\"; stop; }\n", i, i, i)
	}
	b.WriteString("if header :value \"gt\" :comparator \"i;ascii-numeric\" \"X-Spam-Score\" \"5\" { fileinto \"Junk\"; stop; }\n")
	b.WriteString("if body :contains \"unsubscribe\" { addflag \"bulk\"; }\n")
	return b.String()
}()

// BenchmarkDeliverSieve compares local delivery of 4 KiB messages to a user without a
// Sieve script (bob) and to one whose active script has twenty rules that end in the
// implicit keep (alice; the common case: most mail matches no rule). The two alternate
// message by message in one loop, so that both see the same disk and the same load (the
// delivery is dominated by its fsyncs, whose cost drifts on a shared machine); it reports
// each one's ns per message and ratio = messages/s with the script / without. The target
// (issue 18): ratio >= 0.9.
func BenchmarkDeliverSieve(b *testing.B) {
	body := strings.Repeat("This is a line of a four kilobyte message body, nothing more.\r\n", 64)
	msg := "From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: hello\r\nMessage-ID: <m@example.net>\r\n\r\n" + body
	r := newSieveRig(b, SieveConfig{})
	r.setScript(b, "alice@example.org", userScript)
	ctx := context.Background()
	env := spool.Envelope{From: "carol@example.net", Size: int64(len(msg))}
	var with, without time.Duration
	deliver := func(rcpt string) time.Duration {
		start := time.Now()
		if err := r.d.Deliver(ctx, rcpt, env, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	deliver("alice@example.org") // open both users, compile the script
	deliver("bob@example.org")
	b.SetBytes(int64(len(msg)))
	n := 0
	for b.Loop() {
		// Which goes first alternates too: a delivery can wait for work the one before
		// it left behind (a shared directory fsync), and that must not favour either.
		if n%2 == 0 {
			without += deliver("bob@example.org")
			with += deliver("alice@example.org")
		} else {
			with += deliver("alice@example.org")
			without += deliver("bob@example.org")
		}
		n++
	}
	b.ReportMetric(float64(without.Nanoseconds())/float64(n), "ns/msg-without")
	b.ReportMetric(float64(with.Nanoseconds())/float64(n), "ns/msg-with")
	b.ReportMetric(float64(without)/float64(with), "ratio")
}
