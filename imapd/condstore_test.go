package imapd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var reModSeq = regexp.MustCompile(`MODSEQ \(?(\d+)`)

func modseqOf(t *testing.T, line string) uint64 {
	t.Helper()
	m := reModSeq.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no MODSEQ in %q", line)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// CONDSTORE (RFC 7162 §3.1): HIGHESTMODSEQ in SELECT and STATUS, MODSEQ in FETCH and in
// the FETCH of STORE, FETCH (CHANGEDSINCE), STORE (UNCHANGEDSINCE) with MODIFIED, SEARCH
// MODSEQ with the highest modseq found, and another session's flag change with MODSEQ.
func TestCondStore(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for range 3 {
		e.deliver(t, "alice@example.org", msgA)
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r.ok("ENABLE CONDSTORE"); len(lines) != 1 || lines[0] != "* ENABLED CONDSTORE" {
		t.Fatalf("ENABLE: %q", lines)
	}
	var highest uint64
	for _, l := range r.ok("SELECT INBOX") {
		if strings.HasPrefix(l, "* OK [HIGHESTMODSEQ ") {
			highest = modseqOf(t, strings.Replace(l, "HIGHESTMODSEQ", "MODSEQ", 1))
		}
	}
	if highest == 0 {
		t.Fatal("SELECT without HIGHESTMODSEQ")
	}
	lines := r.ok(`STORE 2 +FLAGS (\Flagged)`)
	if len(lines) != 1 || !strings.Contains(lines[0], `FLAGS (\Flagged`) {
		t.Fatalf("STORE: %q", lines)
	}
	m2 := modseqOf(t, lines[0])
	if m2 <= highest {
		t.Errorf("modseq after STORE %d, not above %d", m2, highest)
	}
	lines = r.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", highest)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* 2 FETCH") || modseqOf(t, lines[0]) != m2 {
		t.Errorf("FETCH CHANGEDSINCE: %q", lines)
	}
	// Message 2 changed since highest: a conditional STORE leaves it alone.
	lines, st := r.cmd(`STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Seen)`, highest)
	if st != "OK [MODIFIED 2] STORE completed" || len(lines) != 2 {
		t.Errorf("conditional STORE: %s %q", st, lines)
	}
	if lines := r.ok("FETCH 2 (FLAGS)"); len(lines) != 1 || strings.Contains(lines[0], `\Seen`) {
		t.Errorf("message 2 changed by a failed conditional STORE: %q", lines)
	}
	lines = r.ok("SEARCH MODSEQ %d", m2+1) // 1 and 3 got \Seen after 2 was flagged
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* SEARCH 1 3 (MODSEQ ") {
		t.Errorf("SEARCH MODSEQ: %q", lines)
	}
	if lines := r.ok("STATUS INBOX (HIGHESTMODSEQ)"); len(lines) != 1 || !strings.Contains(lines[0], "HIGHESTMODSEQ ") {
		t.Errorf("STATUS: %q", lines)
	}
	// Another session's change reaches this one with its MODSEQ.
	b := dialRaw(t, e.addr)
	b.ok(`LOGIN alice@example.org "secret pw"`)
	b.ok("SELECT INBOX")
	b.ok(`STORE 3 -FLAGS.SILENT (\Seen)`)
	lines = r.ok("NOOP")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* 3 FETCH (UID 3 FLAGS (") || strings.Contains(lines[0], `\Seen`) || modseqOf(t, lines[0]) == 0 {
		t.Errorf("NOOP after another session's STORE: %q", lines)
	}
}

// A FETCH of MODSEQ turns CONDSTORE on in the selected state and says HIGHESTMODSEQ.
func TestCondStoreEnabledByFetch(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	lines := r.ok("FETCH 1 (MODSEQ)")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "* 1 FETCH (UID 1 MODSEQ (") || !strings.HasPrefix(lines[1], "* OK [HIGHESTMODSEQ ") {
		t.Errorf("FETCH MODSEQ: %q", lines)
	}
	if lines := r.ok("FETCH 1 (FLAGS)"); len(lines) != 1 || !strings.Contains(lines[0], "MODSEQ (") {
		t.Errorf("FETCH FLAGS after CONDSTORE: %q", lines)
	}
}

// Two sessions race conditional STOREs with the same UNCHANGEDSINCE on one message (RFC
// 7162 §3.1.3): in every round exactly one succeeds and the other ends with
// [MODIFIED 1], whatever the interleaving.
func TestCondStoreRace(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	var rs [2]*raw
	for i := range rs {
		rs[i] = dialRaw(t, e.addr)
		rs[i].ok(`LOGIN alice@example.org "secret pw"`)
		rs[i].ok("ENABLE CONDSTORE")
		rs[i].ok("SELECT INBOX")
	}
	for round := range 20 {
		lines := rs[0].ok("UID FETCH 1 (MODSEQ)")
		since := modseqOf(t, lines[len(lines)-1])
		var status [2]string
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each session's own t.Fatal would stop the wrong goroutine: read raw.
				r.n++
				tag := fmt.Sprintf("r%d", r.n)
				fmt.Fprintf(r.conn, "%s UID STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($r%ds%d)\r\n", tag, since, round, i)
				for {
					l, err := r.r.ReadString('\n')
					if err != nil {
						status[i] = "read: " + err.Error()
						return
					}
					if strings.HasPrefix(l, tag+" ") {
						status[i] = strings.TrimSpace(strings.TrimPrefix(l, tag+" "))
						return
					}
				}
			}()
		}
		wg.Wait()
		won, lost := 0, 0
		for _, s := range status {
			switch {
			case strings.HasPrefix(s, "OK [MODIFIED 1]"):
				lost++
			case strings.HasPrefix(s, "OK"):
				won++
			}
		}
		if won != 1 || lost != 1 {
			t.Fatalf("round %d: %q; want one OK and one OK [MODIFIED 1]", round, status)
		}
		rs[1].ok("NOOP") // take the other session's FETCH
	}
}
