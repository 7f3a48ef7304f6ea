//go:build unix

package virus

import (
	"net"
	"testing"
	"time"
)

func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); server <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-server
	if !alive(c) {
		t.Fatal("an open idle connection is reported dead")
	}
	_, _ = s.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	if alive(c) {
		t.Fatal("a connection with unexpected pending data is reported usable")
	}
	_ = s.Close()
	time.Sleep(20 * time.Millisecond)
	if alive(c) {
		t.Fatal("a connection closed by the peer is reported alive")
	}
}
