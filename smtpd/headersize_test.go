package smtpd_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// A header block over max_header_size gets 552 5.3.4 naming the limit, before the data
// stage runs; the session goes on, and a header under the limit is accepted.
func TestMaxHeaderSize(t *testing.T) {
	var dataStage atomic.Int32
	ts := start(t, func(c *smtpd.Config, d *smtpd.Deps) {
		c.MaxHeaderSize = 4096
		inner := d.Engine
		d.Engine = smtpd.EngineFunc(func(ctx context.Context, s policy.Stage, tx *policy.Transaction) policy.Decision {
			if s == policy.StageData {
				dataStage.Add(1)
			}
			return inner.Evaluate(ctx, s, tx)
		})
	})
	// header returns a header block of exactly n bytes, in lines of at most 1000.
	header := func(n int) string {
		var b strings.Builder
		b.WriteString("Subject: padded\r\n")
		for b.Len() < n {
			line := min(1000, n-b.Len())
			if rest := n - b.Len() - line; rest > 0 && rest < 16 {
				line -= 16 // leave room for a last field
			}
			b.WriteString("X-Pad: " + strings.Repeat("p", line-len("X-Pad: \r\n")) + "\r\n")
		}
		return b.String()
	}
	c := dial(t, ts.addr("mx"))
	c.Expect(t, "EHLO client.example.net", 250)
	allHeader := "Subject: no empty line\r\n" + strings.Repeat("a line without a colon\r\n", 200)
	for _, tc := range []struct {
		msg  string
		size int // of the header block, when the test builds it exactly
		code int
	}{
		{header(4097) + "\r\nbody\r\n", 4097, 552},
		{header(4096) + "\r\nbody\r\n", 4096, 250},
		{header(30000) + "\r\nbody\r\n", 30000, 552},
		{allHeader, 0, 552}, // read as mail readers do: no empty line, all header
	} {
		if tc.size > 0 && len(headerOf(tc.msg)) != tc.size {
			t.Fatalf("test header of %d bytes, want %d", len(headerOf(tc.msg)), tc.size)
		}
		c.Expect(t, "MAIL FROM:<a@example.net>", 250)
		c.Expect(t, "RCPT TO:<bob@example.test>", 250)
		c.Expect(t, "DATA", 354)
		c.Send(tc.msg + ".\r\n")
		before := dataStage.Load()
		r := c.Expect(t, "", tc.code)
		if tc.code == 552 {
			if r.Enhanced() != "5.3.4" || !strings.Contains(r.Text(), "max_header_size") {
				t.Errorf("reply %v", r)
			}
			if dataStage.Load() != before {
				t.Error("the data stage ran on an oversized header")
			}
		}
	}
	c.Expect(t, "NOOP", 250)
	if n := ts.q.count(); n != 1 {
		t.Errorf("queued %d messages, want 1", n)
	}
}

func headerOf(msg string) string {
	i := strings.Index(msg, "\r\n\r\n")
	return msg[:i+2]
}
