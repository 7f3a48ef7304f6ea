package imapd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// budgetUsed is what the sessions hold of the memory budget (Config.FetchMemory).
func budgetUsed(e *env) int64 {
	e.srv.mem.mu.Lock()
	defer e.srv.mem.mu.Unlock()
	return e.srv.mem.used
}

// padded is a message whose header is about 2 KiB: what parsing its envelope scans.
func padded(i int) string {
	return fmt.Sprintf("From: a%d@example.org\r\nSubject: message %d\r\nX-Pad: %s\r\n\r\nbody %d\r\n", i, i, strings.Repeat("p", 2000), i)
}

// TestSortParseLimit: SORT makes the envelopes the server has not cached by parsing the
// message headers, within one command's max_fetch_parse_size as FETCH ENVELOPE is: over
// it, NO [LIMIT]. Before, each message's parse had a limit of its own, and a SORT over
// any number of uncached messages parsed them all.
func TestSortParseLimit(t *testing.T) {
	e := start(t, Config{Trusted: true, MaxFetchParseSize: 16 << 10})
	for i := range 20 { // 40 KiB of headers
		e.deliver(t, "alice@example.org", padded(i))
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	_, st := r.cmd("SORT (SUBJECT) UTF-8 ALL")
	if !strings.HasPrefix(st, "NO [LIMIT]") || !strings.Contains(st, "SORT") {
		t.Errorf("SORT over 40 KiB of uncached headers, 16 KiB max_fetch_parse_size: %q, want NO [LIMIT]", st)
	}
	// FETCH ENVELOPE of the same messages is refused alike (the SORT cached the ones it
	// parsed: a new server has none).
	e2 := start(t, Config{Trusted: true, MaxFetchParseSize: 16 << 10})
	for i := range 20 {
		e2.deliver(t, "alice@example.org", padded(i))
	}
	r2 := dialRaw(t, e2.addr)
	r2.ok(`LOGIN alice@example.org "secret pw"`)
	r2.ok("SELECT INBOX")
	if _, st := r2.cmd("FETCH 1:* ENVELOPE"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Errorf("FETCH ENVELOPE: %q, want NO [LIMIT]", st)
	}
	// Within the limit SORT answers, and sorts by the envelopes it made.
	e3 := start(t, Config{Trusted: true, MaxFetchParseSize: 16 << 10})
	for _, s := range []string{"b", "c", "a"} {
		e3.deliver(t, "alice@example.org", "From: x@example.org\r\nSubject: "+s+"\r\n\r\nhi\r\n")
	}
	r3 := dialRaw(t, e3.addr)
	r3.ok(`LOGIN alice@example.org "secret pw"`)
	r3.ok("SELECT INBOX")
	if lines := r3.ok("SORT (SUBJECT) UTF-8 ALL"); len(lines) != 1 || lines[0] != "* SORT 3 1 2" {
		t.Errorf("SORT within the limit: %q, want * SORT 3 1 2", lines)
	}
	if n := budgetUsed(e3); n != 0 {
		t.Errorf("after SORT, %d bytes of the budget are still held", n)
	}
}

// TestSortWaitsForBudget: parsing a header for SORT holds a share of fetch_memory, as
// FETCH's parse does, so SORT waits while the budget is full (and would get NO
// [UNAVAILABLE] after memWait). Before, it parsed outside the budget and answered at
// once.
func TestSortWaitsForBudget(t *testing.T) {
	e := start(t, Config{Trusted: true, FetchMemory: 1 << 20})
	for i := range 3 {
		e.deliver(t, "alice@example.org", padded(i))
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	release, err := e.srv.mem.acquire(context.Background(), e.srv.mem.max) // every other reader
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(r.conn, "s1 SORT (SUBJECT) UTF-8 ALL\r\n")
	r.conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	l, err := r.r.ReadString('\n')
	if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("SORT answered %q (%v) while the memory budget was full, want it to wait", l, err)
	}
	release()
	r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var lines []string
	for {
		l := r.line()
		if strings.HasPrefix(l, "s1 ") {
			if !strings.HasPrefix(l, "s1 OK") {
				t.Fatalf("SORT after the budget had room: %q", l)
			}
			break
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0] != "* SORT 1 2 3" {
		t.Errorf("SORT: %q, want * SORT 1 2 3", lines)
	}
	if n := budgetUsed(e); n != 0 {
		t.Errorf("after SORT, %d bytes of the budget are still held", n)
	}
}

// TestHeldMemoryReleasedOnPanic: a SEARCH reading a message and an APPEND of a literal8
// hold a share of fetch_memory; when the command panics (the connection's recover ends
// the connection), the share is given back. Before, it was released after the call
// returned, not deferred: a panic kept it until the server restarted, and with the whole
// budget kept, every FETCH got NO [UNAVAILABLE].
func TestHeldMemoryReleasedOnPanic(t *testing.T) {
	e := start(t, Config{Trusted: true, FetchMemory: 1 << 20})
	e.deliver(t, "alice@example.org", "From: a@example.org\r\nSubject: hi\r\n\r\nhello there\r\n")
	defer func() { testHookHeld = nil }()
	for _, c := range []struct{ where, cmd string }{
		{"search", "SEARCH BODY hello"},
		{"append", "APPEND INBOX ~{%d+}\r\n%s"},
	} {
		held := make(chan int64, 1)
		testHookHeld = func(where string) {
			if where == c.where {
				held <- budgetUsed(e)
				panic("forced in " + where)
			}
		}
		r := dialRaw(t, e.addr)
		r.ok(`LOGIN alice@example.org "secret pw"`)
		r.ok("SELECT INBOX")
		cmd := c.cmd
		if c.where == "append" {
			m := "From: a@example.org\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01bin\r\n"
			cmd = fmt.Sprintf(c.cmd, len(m), m)
		}
		fmt.Fprintf(r.conn, "p1 %s\r\n", cmd)
		select {
		case n := <-held:
			if n <= 0 {
				t.Errorf("%s held %d bytes of the budget in the hook, want some", c.where, n)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the hook did not run", c.where)
		}
		if _, err := r.r.ReadString('\n'); err == nil {
			// the panic ends the connection; an answer is not expected
			for {
				if _, err := r.r.ReadString('\n'); err != nil {
					break
				}
			}
		}
		var n int64
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if n = budgetUsed(e); n == 0 || time.Now().After(deadline) {
				break
			}
		}
		if n != 0 {
			t.Errorf("after a panic in %s, %d bytes of the budget are held for good", c.where, n)
		}
	}
	testHookHeld = nil
	// The budget is whole: a FETCH of the body is answered.
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	if lines := r.ok("FETCH 1 BODY.PEEK[]"); !strings.Contains(strings.Join(lines, "\n"), "hello there") {
		t.Errorf("FETCH after the panics: %q", lines)
	}
}
