package proxy

import (
	"io"
	"testing"
)

// TestLMTPMemoryBudget: when the sessions together hold lmtpMemTotal bytes of messages in
// memory, another session's message goes to a file from its first byte, and a body gives
// back what it reserved when it is closed.
func TestLMTPMemoryBudget(t *testing.T) {
	s := &Server{cfg: Config{SpoolDir: t.TempDir()}}
	a := &lmtpBody{s: s}
	if err := a.write([]byte("small\r\n")); err != nil || a.f != nil {
		t.Fatalf("a small message was spooled (%v)", err)
	}
	s.lmtpMem.Add(lmtpMemTotal - 10) // the other sessions'
	b := &lmtpBody{s: s}
	if err := b.write([]byte("another small one\r\n")); err != nil {
		t.Fatal(err)
	}
	if b.f == nil {
		t.Fatal("the memory budget was exceeded")
	}
	got, _ := io.ReadAll(b.reader())
	if string(got) != "another small one\r\n" {
		t.Fatalf("spooled %q", got)
	}
	a.close()
	b.close()
	if n := s.lmtpMem.Load(); n != lmtpMemTotal-10 {
		t.Fatalf("budget in use %d after close, want %d", n, lmtpMemTotal-10)
	}
}
