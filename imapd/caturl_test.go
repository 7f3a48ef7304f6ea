package imapd

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// memUsed is what the server's memory budget (Config.FetchMemory) has handed out.
func memUsed(e *env) int64 {
	e.srv.mem.mu.Lock()
	defer e.srv.mem.mu.Unlock()
	return e.srv.mem.used
}

// A CATENATE URL is the client's bytes: a user name of bytes that are not UTF-8 before
// ";AUTH=" is refused NO [BADURL] (RFC 4469 §5), and the session goes on. Before,
// strings.ToUpper turned each such byte into U+FFFD, three bytes, and the index of
// ";AUTH=" it gave sliced the user name past its end: a panic, the connection closed,
// and the budget share the URL's copy had taken was never given back, so that enough
// such commands left every user's FETCH NO [UNAVAILABLE].
func TestCatenateURLNotUTF8(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, url := range []string{
		"imap://\xff\xff\xff\xff;AUTH=*@localhost/INBOX/;UID=1",
		"imap://" + strings.Repeat("\u0250", 8) + ";auth=*@localhost/INBOX/;UID=1", // ToUpper: 2 bytes to 3
	} {
		_, st := r.cmd("APPEND INBOX CATENATE (URL {%d+}\r\n%s)", len(url), url)
		if !strings.HasPrefix(st, "NO [BADURL") {
			t.Errorf("URL %q: %s, want NO [BADURL", url, st)
		}
	}
	r.ok("NOOP")
	if n := memUsed(e); n != 0 {
		t.Errorf("the memory budget holds %d bytes after the commands", n)
	}
}

// FuzzParseIMAPURL: a CATENATE URL (RFC 5092, RFC 4469 §3) is any bytes a client sends;
// parsing never panics, and what it accepts names a message (a UID) and, when
// absolute, a host.
func FuzzParseIMAPURL(f *testing.F) {
	for _, s := range []string{
		"/INBOX/;UID=1", "/INBOX;UIDVALIDITY=7/;UID=2/;SECTION=1.2.MIME/;PARTIAL=4.7",
		"imap://Alice@Example.org;AUTH=*@127.0.0.1:143/INBOX/;UID=1/;SECTION=TEXT",
		"imap://a%40b@[::1]:143/x%2Fy/;uid=3", "imap://\xff\xff\xff\xff;AUTH=*@h/INBOX/;UID=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, ok := parseIMAPURL(raw)
		if !ok {
			return
		}
		if u.uid == 0 || u.mailbox == "" || (u.absolute && u.host == "") {
			t.Errorf("parseIMAPURL(%q) accepted %+v", raw, u)
		}
	})
}

// panicMidFetch makes a FETCH panic while it writes a section (a bug: the connection's
// recover logs it and ends the connection, the server goes on) and waits for the
// connection to close.
func panicMidFetch(t *testing.T, e *env) {
	t.Helper()
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	hooked := make(chan struct{}, 1)
	testHookBeforeBody = func(*msgFile) {
		hooked <- struct{}{}
		panic("test: a bug while writing a section")
	}
	t.Cleanup(func() { testHookBeforeBody = nil })
	r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(r.conn, "f1 FETCH 1 (BODY.PEEK[])\r\n")
	if _, err := io.ReadAll(r.r); err != nil {
		t.Fatalf("the connection of a FETCH that panicked stays open: %v", err)
	}
	<-hooked // and the hook's read of testHookBeforeBody happened before
	testHookBeforeBody = nil
}

// A panic while a response is written closes the connection. Before, the recover
// flushed the responses first, under the write lock the panicking message writer still
// held: the connection's goroutine waited for ever, with its socket and its session.
func TestPanicMidResponseClosesConnection(t *testing.T) {
	panicMidFetch(t, start(t, Config{Trusted: true}))
}

// A FETCH that panics gives back the message's share of the memory budget. Before, it
// was released by straight-line code the panic skipped: each such panic kept its bytes
// for the life of the process, and a client that could repeat it left every user's
// FETCH NO [UNAVAILABLE].
func TestFetchPanicReleasesBudget(t *testing.T) {
	e := start(t, Config{Trusted: true})
	panicMidFetch(t, e)
	for deadline := time.Now().Add(5 * time.Second); memUsed(e) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the memory budget holds %d bytes after the FETCH's connection ended", memUsed(e))
		}
	}
}
