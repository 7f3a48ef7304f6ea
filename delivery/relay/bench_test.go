package relay_test

import (
	"testing"

	"github.com/portcullis-mail/portcullis/delivery/internal/clienttest"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
)

// BenchmarkSink relays 4 KiB messages one at a time to Postfix's smtp-sink (which
// stores nothing), with and without session reuse: the client's own cost per message.
func BenchmarkSink(b *testing.B) {
	sink := postfixtest.StartSinkDiscard(b, "")
	_, p, _ := netSplit(sink.Addr)
	clienttest.Benchmark(b, func(reuse bool) clienttest.Client {
		c, _ := relay.New(relay.Config{DisableReuse: !reuse, Logger: quiet})
		return c
	}, "[127.0.0.1]:"+p, "b@remote.test")
}
