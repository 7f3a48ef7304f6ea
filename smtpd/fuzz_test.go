package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// memQueue keeps queued messages in memory (the fuzz targets check what reached it).
type memQueue struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (q *memQueue) Enqueue(_ context.Context, _ spool.Envelope, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, b)
	return "M", nil
}

func (q *memQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	return m
}

// fuzzServer runs a server of cfg with short timeouts and small limits, whose sessions
// the fuzz targets feed over net.Pipe, through the same admission path as a TCP
// connection (fuzzSession).
func fuzzServer(t testing.TB, cfg Config, deps Deps) *Server {
	cfg.DataDir = t.TempDir()
	cfg.MaxMessageSize = 64 << 10
	cfg.MaxLineSize = 1000
	cfg.CommandTimeout = 500 * time.Millisecond
	cfg.DataTimeout = time.Second
	cfg.SessionTimeout = 3 * time.Second
	cfg.MaxErrors = 50
	deps.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// mxFuzzServer is a fuzzServer with one MX listener, queueing into memory.
func mxFuzzServer(t testing.TB) (*Server, *memQueue) {
	q := &memQueue{}
	return fuzzServer(t, Config{
		Hostname:     "mx.example.test",
		Listeners:    []ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0"}},
		LocalDomains: []string{"example.test"},
	}, Deps{Spool: q}), q
}

// fuzzSession feeds input to a new session over net.Pipe, then closes the client side,
// and fails if the session has not ended in time (less than the fuzzer's 10 s hang
// limit). It returns the server's replies.
func (s *Server) fuzzSession(t *testing.T, input []byte) []byte {
	client, server := net.Pipe()
	g := s.listeners[0].gate
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.admit(g, server)
	}()
	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, io.LimitReader(client, 1<<20))
		close(readDone)
	}()
	_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = client.Write(input)
	select {
	case <-readDone:
	case <-time.After(4 * time.Second): // sessions end within SessionTimeout (3s)
		client.Close()
		<-readDone
		t.Fatalf("session did not end within 5s; replies so far:\n%s", out.String())
	}
	client.Close()
	for range 300 {
		s.mu.Lock()
		n := s.total
		s.mu.Unlock()
		if n == 0 {
			return out.Bytes()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("server-side connection still open 3s after the client closed")
	return nil
}

// FuzzSession feeds arbitrary bytes to the SMTP command path: no panic, no hang, and the
// session always ends.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"a@b\"@example.test>\r\nRCPT TO:<@x:a@b>\r\nRSET\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN\r\n*\r\nSTARTTLS\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=99999999999 BODY=8BITMIME\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@example.test>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\nde",
		"\x00\xff\r\n\n\r..\r\nVRFY\r\nEXPN x\r\nNOOP\r\n",
		strings.Repeat("A", 3000) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	srv, q := mxFuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		srv.fuzzSession(t, append(in, "\r\nQUIT\r\n"...))
		checkQueued(t, q.take())
	})
}

// FuzzData sends arbitrary bytes as the message of a valid transaction: no panic, no hang,
// and whatever is queued has CRLF line endings only (the smuggling guarantee).
func FuzzData(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nhello\r\n",
		"a\n.\nMAIL FROM:<e@x>\r\n",
		"a\r\n.\nb\r\n.\r\nMAIL FROM:<e@x>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nx\r\n",
		"a\r.\rb",
		"a\r\r\n.\r\n",
		"..dot\r\n.\r\nNOOP",
	} {
		f.Add([]byte(s))
	}
	srv, q := mxFuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + string(data) + "\r\n.\r\nQUIT\r\n"
		srv.fuzzSession(t, []byte(in))
		checkQueued(t, q.take())
	})
}

func checkQueued(t *testing.T, msgs [][]byte) {
	for _, m := range msgs {
		for i, c := range m {
			if c == '\n' && (i == 0 || m[i-1] != '\r') || c == '\r' && (i+1 == len(m) || m[i+1] != '\n') {
				t.Fatalf("queued message with a bare CR or LF at %d: %q", i, m)
			}
		}
	}
}

// FuzzReadMessage checks the DATA reader alone: it accepts exactly the inputs without a
// bare CR or LF, and returns them unchanged.
func FuzzReadMessage(f *testing.F) {
	for _, s := range []string{"", "a\r\n", "a\n", "a\r", "\r\r\n", "a\r\nb\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var buf, buf2 bytes.Buffer
		err := readMessage(bytes.NewReader(in), &buf)
		if err2 := readChunks(bytes.NewReader(in), &buf2); !errors.Is(err2, err) {
			t.Fatalf("DATA and BDAT readers disagree on %q: %v, %v", in, err, err2)
		}
		bare := bytes.Count(in, []byte("\r\n")) != bytes.Count(in, []byte("\r")) || bytes.Count(in, []byte("\r\n")) != bytes.Count(in, []byte("\n"))
		switch {
		case err == nil && bare:
			t.Fatalf("accepted a bare newline: %q", in)
		case errors.Is(err, errBareNewline) && !bare:
			t.Fatalf("refused a clean message: %q", in)
		case err == nil && !bytes.Equal(buf.Bytes(), in):
			t.Fatalf("altered: %q -> %q", in, buf.Bytes())
		case err != nil && !errors.Is(err, errBareNewline):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzParseMailbox checks the address parser: no panic, and an accepted address has a
// valid domain and a local part without control characters or routing characters.
func FuzzParseMailbox(f *testing.F) {
	for _, s := range []string{"a@b.c", "user%x@example.test", "x!y@example.test", "u@[192.0.2.1]", "u@[IPv6:::1]", "a@b@c", "@", "a@-b.c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseMailbox(s)
		if err != nil || s == "" {
			return
		}
		if strings.ContainsAny(a.Local, "@%!\r\n") || a.Local == "" {
			t.Fatalf("%q: local part %q", s, a.Local)
		}
		if !validDomain(a.Domain) && !validAddressLiteral(a.Domain) {
			t.Fatalf("%q: domain %q", s, a.Domain)
		}
	})
}

func TestTap(t *testing.T) {
	for in, bad := range map[string]bool{
		"a\r\n.\rX":           true,
		"a\r\n.\r\r\n":        true,
		"a\r\n.\r\n":          false,
		"a\r\n..\rX":          false, // visible to Data as ".\rX"
		"250 OK\r\n.\r":       false, // undecided until the next byte
		"\r\n.\r\r\n.\r\nEND": true,
	} {
		var tp tap
		// Byte by byte: the pattern may straddle writes.
		for i := range len(in) {
			tp.Write([]byte{in[i]})
		}
		var whole tap
		whole.Write([]byte(in))
		if tp.bad.Load() != bad || whole.bad.Load() != bad {
			t.Errorf("%q: bad=%v/%v, want %v", in, tp.bad.Load(), whole.bad.Load(), bad)
		}
	}
}
