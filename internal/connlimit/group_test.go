package connlimit_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
)

// Close stops the listener, ends the sessions by closing their connections and returns
// only after they did; nothing starts after it.
func TestGroupClose(t *testing.T) {
	var g connlimit.Group
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !g.Listen(ln) {
		t.Fatal("Listen on an open group")
	}
	ended := make(chan struct{})
	served := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		g.Go(c, func() {
			close(served)
			c.Read(make([]byte, 1)) // until Close closes c
			time.Sleep(20 * time.Millisecond)
			close(ended)
		})
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	<-served
	g.Close()
	select {
	case <-ended:
	default:
		t.Fatal("Close returned before the session ended")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener still open: %v", err)
	}
	if !g.Closed() || g.Listen(ln) || g.Go(client, func() { t.Error("ran after Close") }) {
		t.Error("the group accepted work after Close")
	}
}
