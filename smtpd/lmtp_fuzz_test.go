package smtpd

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/spool"
)

// memLocal is a LocalDeliverer in memory: "full" is over quota, "gone" has vanished,
// everyone else receives the message.
type memLocal struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (m *memLocal) Deliver(_ context.Context, rcpt string, _ spool.Envelope, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(rcpt, "full@"):
		return delivery.Temporary("452 4.2.2 mailbox full", nil)
	case strings.HasPrefix(rcpt, "gone@"):
		return delivery.Permanent("550 5.1.1 no such user here", nil)
	}
	m.mu.Lock()
	m.msgs = append(m.msgs, b)
	m.mu.Unlock()
	return nil
}

func (m *memLocal) take() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.msgs
	m.msgs = nil
	return out
}

// FuzzLMTP feeds arbitrary bytes to an LMTP session on a unix-socket listener (trusted):
// no panic, no hang, the session always ends, and whatever is delivered has CRLF line
// endings only.
func FuzzLMTP(f *testing.F) {
	for _, s := range []string{
		"LHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<full@example.test>\r\nRCPT TO:<gone@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n",
		"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<b@example.test>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\nde",
		"EHLO x\r\nHELO x\r\nLHLO x\r\nAUTH PLAIN AGFAYg==\r\nSTARTTLS\r\n",
		"LHLO x\r\nMAIL FROM:<a@b> SIZE=99999999999\r\nRCPT TO:<@x:a@b>\r\nDATA\r\na\n.\nb\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	local := &memLocal{}
	s := fuzzServer(f, Config{
		Hostname:  "store.example.test",
		Listeners: []ListenerConfig{{Name: "lmtp", Addr: "unix:" + filepath.Join(f.TempDir(), "s"), Mode: ModeLMTP}},
	}, Deps{Local: local})
	f.Fuzz(func(t *testing.T, in []byte) {
		s.fuzzSession(t, append(in, "\r\nQUIT\r\n"...))
		checkQueued(t, local.take())
	})
}
