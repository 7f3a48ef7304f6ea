package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// TestSearchHeaderReadsHeaderOnly: SEARCH on header fields (SUBJECT, FROM, TO, CC, BCC,
// HEADER, SENTSINCE) over messages with large bodies answers as it did when it read
// whole messages, but reads only their header blocks (issue 15 item 9: one cheap
// command read every planted message whole); TEXT and BODY still read the body.
func TestSearchHeaderReadsHeaderOnly(t *testing.T) {
	e := start(t, Config{Trusted: true, CacheSize: -1})
	// The bodies are large and hold lines that look like header fields: they must not
	// match the criteria on header fields.
	body := strings.Repeat("Subject: not the subject, from: eve@example.net\r\n", 2<<20/48)
	msgs := []string{
		"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: quarterly report\r\n" +
			"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nX-Tag: alpha\r\n\r\n" + body + "needle\r\n",
		"From: carl@example.com\r\nTo: dora@example.com\r\nCc: ann@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?= lunch\r\n" +
			"Date: Tue, 10 Mar 2026 10:00:00 +0000\r\n\r\n" + body,
		"From: eve@example.net\r\nTo: bob@example.org\r\nBcc: secret@example.org\r\nSubject: Re: quarterly REPORT\r\n" +
			"Date: Fri, 20 Mar 2026 10:00:00 +0000\r\nX-Tag: beta\r\n\r\n" + body,
		// Bare LF, as another program may write it.
		strings.ReplaceAll("From: fay@example.org\nSubject: plain\nDate: Sat, 21 Mar 2026 10:00:00 +0000\n\n", "\n", "\r\n") +
			strings.ReplaceAll(body, "\r\n", "\n"),
	}
	for _, m := range msgs {
		e.deliver(t, "bob@example.org", m)
	}
	r := dialRaw(t, e.addr)
	r.ok("LOGIN bob@example.org pw2")
	r.ok("SELECT INBOX")

	before := e.srv.searchRead.Load()
	for q, want := range map[string]string{
		`SUBJECT report`:                 "* SEARCH 1 3",
		`SUBJECT "café"`:                 "* SEARCH 2",
		`SUBJECT "not the subject"`:      "* SEARCH",
		`FROM ann@example.org`:           "* SEARCH 1",
		`FROM eve`:                       "* SEARCH 3",
		`TO bob@example.org`:             "* SEARCH 1 3",
		`CC ann`:                         "* SEARCH 2",
		`BCC secret`:                     "* SEARCH 3",
		`HEADER X-Tag ""`:                "* SEARCH 1 3",
		`HEADER X-Tag beta`:              "* SEARCH 3",
		`SENTSINCE 15-Mar-2026`:          "* SEARCH 3 4",
		`SENTBEFORE 5-Mar-2026`:          "* SEARCH 1",
		`OR SUBJECT plain FROM carl`:     "* SEARCH 2 4",
		`NOT SUBJECT report`:             "* SEARCH 2 4",
		`SUBJECT report NOT FROM ann`:    "* SEARCH 3",
		`CHARSET UTF-8 SUBJECT "café"`:   "* SEARCH 2",
		`HEADER Subject "re: quarterly"`: "* SEARCH 3",
	} {
		lines := r.ok("SEARCH %s", q)
		if fmt.Sprint(lines) != "["+want+"]" {
			t.Errorf("SEARCH %s = %q, want %q", q, lines, want)
		}
	}
	// 17 searches over 4 headers of under 300 bytes each.
	if n := e.srv.searchRead.Load() - before; n > 17*4*300 {
		t.Errorf("header searches read %d bytes of the messages", n)
	}

	// TEXT and BODY read the bodies, and together with header criteria answer the same.
	before = e.srv.searchRead.Load()
	for q, want := range map[string]string{
		`BODY needle`:                "* SEARCH 1",
		`SUBJECT report BODY needle`: "* SEARCH 1",
		`BODY needle SUBJECT report`: "* SEARCH 1",
		`OR BODY needle FROM fay`:    "* SEARCH 1 4",
		`TEXT "quarterly report"`:    "* SEARCH 1 3",
	} {
		lines := r.ok("SEARCH %s", q)
		if fmt.Sprint(lines) != "["+want+"]" {
			t.Errorf("SEARCH %s = %q, want %q", q, lines, want)
		}
	}
	if n := e.srv.searchRead.Load() - before; n < 4*int64(len(body)) {
		t.Errorf("body searches read only %d bytes", n)
	}
	e.srv.mem.mu.Lock()
	used := e.srv.mem.used
	e.srv.mem.mu.Unlock()
	if used != 0 {
		t.Errorf("%d bytes of the memory budget still held", used)
	}
}
