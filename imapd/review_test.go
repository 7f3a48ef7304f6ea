package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
)

// An APPEND refused by the state (before login) still owns its non-synchronising
// literal: the message's lines must not run as commands (RFC 7888 §4; a message body
// with "a LOGOUT" in it is data, not a command).
func TestAppendBeforeLoginLiteralIsNotACommand(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	body := "i1 CAPABILITY\r\n"
	fmt.Fprintf(r.conn, "x APPEND INBOX {%d+}\r\n%s\r\n", len(body), body)
	l := r.line()
	if !strings.HasPrefix(l, "x BAD") && !strings.HasPrefix(l, "x NO") {
		t.Fatalf("APPEND before login: %q", l)
	}
	// The next line answered must be this NOOP's, not the literal's "i1 CAPABILITY".
	lines, status := r.cmd("NOOP")
	if !strings.HasPrefix(status, "OK") || len(lines) != 0 {
		t.Fatalf("after the refused APPEND: %q %q (the literal ran as a command)", lines, status)
	}
}

// SORT and THREAD answer with sequence numbers, as SEARCH does: an EXPUNGE must not come
// with them (RFC 9051 §7.5.1, RFC 5256 §3: variants of SEARCH; Dovecot holds expunges
// back for them too), else the numbers just sent are off by the expunged message. The
// UID forms may carry it.
func TestNoExpungeWithSortOrThread(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for range 3 {
		e.deliver(t, "alice@example.org", msgA)
	}
	a := dialRaw(t, e.addr)
	a.ok(`LOGIN alice@example.org "secret pw"`)
	a.ok("SELECT INBOX")
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("SELECT INBOX")
	b.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")

	for _, c := range []string{"SORT (ARRIVAL) UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"} {
		for _, l := range a.ok("%s", c) {
			if strings.HasSuffix(l, " EXPUNGE") {
				t.Errorf("%s: %q came with it", c, l)
			}
		}
	}
	if lines := a.ok("NOOP"); len(lines) == 0 || lines[len(lines)-1] != "* 1 EXPUNGE" {
		t.Fatalf("NOOP after: %q", lines)
	}
}

// What a client (or a man in the middle) sends in the clear after STARTTLS, before the
// handshake, is dropped: it must not run as if it came over TLS (RFC 9051 §6.2.1;
// CVE-2011-0411's kind).
func TestStartTLSDropsPlaintextAfterIt(t *testing.T) {
	e := start(t, Config{})
	r := dialRaw(t, e.addr)
	fmt.Fprintf(r.conn, "a STARTTLS\r\nb LOGIN alice@example.org \"secret pw\"\r\n")
	if l := r.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.conn, r.r = tc, bufio.NewReader(tc)
	lines, status := r.cmd("NOOP")
	if len(lines) != 0 || !strings.HasPrefix(status, "OK") {
		t.Fatalf("after STARTTLS: %q %q (the injected LOGIN ran)", lines, status)
	}
	if _, status := r.cmd("SELECT INBOX"); !strings.HasPrefix(status, "BAD") {
		t.Fatalf("SELECT after the injected LOGIN: %q, want BAD (not logged in)", status)
	}
}

// THREAD REFERENCES links at most the last maxThreadRefs references of a message: its
// linking is quadratic in them, and a sender chooses them.
func TestThreadRefsBounded(t *testing.T) {
	var b strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&b, " <%d@x>", i)
	}
	refs := threadRefs(b.String(), "<irt@x>")
	if len(refs) != maxThreadRefs || refs[len(refs)-1] != "99999@x" {
		t.Fatalf("%d references, last %q", len(refs), refs[len(refs)-1])
	}
	if refs := threadRefs("", "<a@x> <b@x>"); len(refs) != 1 || refs[0] != "a@x" {
		t.Fatalf("In-Reply-To: %q", refs)
	}
}
