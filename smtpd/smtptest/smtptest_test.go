package smtptest

import (
	"net"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		server.Write([]byte("250-mx.example.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"))
		server.Write([]byte("554 5.7.1 go away\r\n"))
		server.Write([]byte("garbage\r\n"))
	}()
	c := NewConn(client)
	r, err := c.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 250 || len(r.Lines) != 3 || !r.Has("auth plain") || r.Has("STARTTLS") {
		t.Errorf("multi-line reply %v", r)
	}
	r, err = c.ReadReply()
	if err != nil || r.Code != 554 || r.Enhanced() != "5.7.1" || r.Text() != "5.7.1 go away" {
		t.Errorf("reply %v, %v", r, err)
	}
	if _, err := c.ReadReply(); err == nil || !strings.Contains(err.Error(), "bad reply line") {
		t.Errorf("garbage: %v", err)
	}
}

func TestMessage(t *testing.T) {
	m := Message("a@example.net", "b@example.test", "hi", 4096)
	if len(m) < 4096 || strings.Count(m, "\n") != strings.Count(m, "\r\n") || !strings.Contains(m, "\r\n\r\n") {
		t.Errorf("message of %d bytes is not CRLF-clean", len(m))
	}
}
