package lmtp_test

import (
	"testing"

	"github.com/portcullis-mail/portcullis/delivery/internal/clienttest"
	"github.com/portcullis-mail/portcullis/delivery/lmtp"
	"github.com/portcullis-mail/portcullis/delivery/lmtp/dovecottest"
)

// BenchmarkDovecot delivers 4 KiB messages to one mailbox of a real Dovecot over LMTP,
// one at a time, with and without connection reuse; it reports msgs/s.
func BenchmarkDovecot(b *testing.B) {
	dc := dovecottest.Start(b, "alice@example.test")
	clienttest.Benchmark(b, func(reuse bool) clienttest.Client {
		c, _ := lmtp.New(lmtp.Config{DisableReuse: !reuse})
		return c
	}, dc.LMTPAddr(), "alice@example.test")
}
