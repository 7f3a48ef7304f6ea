package loggedin_test

import (
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/loggedin"
)

type sess struct{ name string }

func TestRegistry(t *testing.T) {
	var r loggedin.Registry[*sess]
	a1, a2, b := &sess{"a1"}, &sess{"a2"}, &sess{"b"}
	r.Add("alice", a1, nil)
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	time.Sleep(2 * time.Millisecond)
	r.Add("alice", a2, nil)
	r.Add("bob", b, nil)
	users := r.Users()
	slices.Sort(users)
	if !slices.Equal(users, []string{"alice", "bob"}) {
		t.Fatalf("Users() = %v", users)
	}
	got := r.Before("alice", cut)
	if len(got) != 1 || got[0].S != a1 {
		t.Fatalf("Before(alice, cut) = %v, want a1 only (a2 logged in after the cut)", got)
	}
	if got := r.Before("alice", time.Now()); len(got) != 2 {
		t.Fatalf("Before(alice, now) = %d sessions, want 2", len(got))
	}
	r.Remove("alice", a1)
	r.Remove("alice", a2)
	if users := r.Users(); !slices.Equal(users, []string{"bob"}) {
		t.Fatalf("after removing alice's sessions, Users() = %v", users)
	}
	if got := r.Before("alice", time.Now()); got != nil {
		t.Fatalf("Before of a user without sessions = %v", got)
	}
}

func TestInterrupt(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c1.Read(make([]byte, 1))
		done <- err
	}()
	loggedin.Interrupt(c1, 50*time.Millisecond)
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the blocked read ended with %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not wake the blocked reader")
	}
	// After the grace the connection is closed: its peer sees EOF.
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer read after the grace: %v, want the close", err)
	}
}
