package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/portcullis-mail/portcullis/store"
)

// The base subject (RFC 5256 §2.1) that SORT (SUBJECT) and THREAD compare.
func TestBaseSubject(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                         "HELLO",
		"Re: hello":                     "HELLO",
		"RE:  Re: FWD: hello (fwd)":     "HELLO",
		"Re: [list] Fwd: hello":         "HELLO",
		"[list] Re: hello":              "HELLO",
		"[fwd: Re: hello]":              "HELLO",
		"[list]":                        "[LIST]",
		"Re[2]: hello":                  "HELLO",
		"  many   spaces\there (FWD)  ": "MANY SPACES HERE",
		"Reply: not a leader":           "REPLY: NOT A LEADER",
		"":                              "",
	} {
		if got := baseSubject(in); got != want {
			t.Errorf("baseSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

// SORT and UID SORT order by the criteria with ties by sequence number; ESORT's RETURN
// answers in ESEARCH form.
func TestSort(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for _, m := range []string{
		"From: carl@x.org\r\nSubject: Re: beta\r\nDate: Mon, 02 Jan 2026 10:00:00 +0000\r\n\r\n" + strings.Repeat("x", 300) + "\r\n",
		"From: anna@x.org\r\nSubject: alpha\r\nDate: Mon, 02 Jan 2026 09:00:00 +0000\r\n\r\nx\r\n",
		"From: bob@x.org\r\nSubject: Fwd: beta\r\nDate: Mon, 02 Jan 2026 11:00:00 +0000\r\n\r\n" + strings.Repeat("x", 100) + "\r\n",
	} {
		e.deliver(t, "alice@example.org", m)
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	for cmd, want := range map[string]string{
		"SORT (SUBJECT) UTF-8 ALL":                     "* SORT 2 1 3",
		"SORT (REVERSE SUBJECT) UTF-8 ALL":             "* SORT 1 3 2",
		"SORT (FROM) UTF-8 ALL":                        "* SORT 2 3 1",
		"SORT (DATE) UTF-8 ALL":                        "* SORT 2 1 3",
		"SORT (SIZE) UTF-8 NOT FROM anna":              "* SORT 3 1",
		"UID SORT (REVERSE ARRIVAL) US-ASCII ALL":      "* SORT 3 2 1",
		"SORT RETURN (MIN MAX COUNT) (SIZE) UTF-8 ALL": `* ESEARCH (TAG "a5") MIN 2 MAX 1 COUNT 3`,
	} {
		if lines := r.ok("%s", cmd); len(lines) != 1 || lines[0] != strings.Replace(want, `"a5"`, `"`+tagOf(r)+`"`, 1) {
			t.Errorf("%s: %q, want %q", cmd, lines, want)
		}
	}
	if _, st := r.cmd("SORT (SUBJECT) KOI8-R ALL"); !strings.HasPrefix(st, "NO [BADCHARSET") {
		t.Errorf("SORT with an unknown charset: %s", st)
	}
}

// tagOf is the tag of the command r sent last.
func tagOf(r *raw) string { return fmt.Sprintf("a%d", r.n) }

// QUOTA (RFC 9208): one root "" with the store's quota in KiB; none without a quota;
// SETQUOTA is refused.
func TestQuota(t *testing.T) {
	e := startWith(t, Config{Trusted: true}, store.Config{Quota: 10 << 20})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	lines := r.ok("GETQUOTAROOT INBOX")
	if len(lines) != 2 || lines[0] != `* QUOTAROOT INBOX ""` || lines[1] != `* QUOTA "" (STORAGE 1 10240)` {
		t.Errorf("GETQUOTAROOT: %q", lines)
	}
	if lines := r.ok(`GETQUOTA ""`); len(lines) != 1 || lines[0] != `* QUOTA "" (STORAGE 1 10240)` {
		t.Errorf("GETQUOTA: %q", lines)
	}
	if _, st := r.cmd(`SETQUOTA "" (STORAGE 1)`); !strings.HasPrefix(st, "NO [NOPERM]") {
		t.Errorf("SETQUOTA: %s", st)
	}
	if _, st := r.cmd(`GETQUOTAROOT nosuch`); !strings.HasPrefix(st, "NO") {
		t.Errorf("GETQUOTAROOT of a mailbox that does not exist: %s", st)
	}
	e2 := start(t, Config{Trusted: true})
	r2 := dialRaw(t, e2.addr)
	r2.ok(`LOGIN alice@example.org "secret pw"`)
	if lines := r2.ok("GETQUOTAROOT INBOX"); len(lines) != 1 || lines[0] != "* QUOTAROOT INBOX" {
		t.Errorf("GETQUOTAROOT without a quota: %q", lines)
	}
}

// THREAD's syntax (RFC 5256 §4): chains inline, several children each parenthesised, a
// dummy parent without a number.
func TestWriteThreads(t *testing.T) {
	n := func(num uint32, kids ...*threadNode) *threadNode { return &threadNode{num: num, children: kids} }
	var b strings.Builder
	writeThreads(&b, []*threadNode{n(1), n(2, n(7), n(12), n(13)), n(9, n(10, n(11))), n(0, n(3), n(5, n(6)))})
	if want := "(1)(2 (7)(12)(13))(9 10 11)((3)(5 6))"; b.String() != want {
		t.Errorf("got %s, want %s", b.String(), want)
	}
}

// THREAD REFERENCES (RFC 5256 §2.2): a reply chain through References, a reply whose
// parent is missing (grouped under a dummy with its sibling), and a lone message.
func TestThreadReferences(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for _, m := range []string{
		"Message-ID: <a@x>\r\nSubject: plan\r\nDate: Mon, 02 Jan 2026 10:00:00 +0000\r\n\r\nx\r\n",
		"Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: plan\r\nDate: Mon, 02 Jan 2026 11:00:00 +0000\r\n\r\nx\r\n",
		"Message-ID: <c@x>\r\nSubject: other\r\nDate: Mon, 02 Jan 2026 09:00:00 +0000\r\n\r\nx\r\n",
		"Message-ID: <d@x>\r\nReferences: <a@x> <b@x>\r\nSubject: Re: plan\r\nDate: Mon, 02 Jan 2026 12:00:00 +0000\r\n\r\nx\r\n",
		"Message-ID: <e@x>\r\nIn-Reply-To: <gone@x>\r\nSubject: Re: lost\r\nDate: Mon, 02 Jan 2026 13:00:00 +0000\r\n\r\nx\r\n",
		"Message-ID: <f@x>\r\nIn-Reply-To: <gone@x>\r\nSubject: Re: lost\r\nDate: Mon, 02 Jan 2026 14:00:00 +0000\r\n\r\nx\r\n",
	} {
		e.deliver(t, "alice@example.org", m)
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	if lines := r.ok("THREAD REFERENCES UTF-8 ALL"); len(lines) != 1 || lines[0] != "* THREAD (3)(1 2 4)((5)(6))" {
		t.Errorf("THREAD REFERENCES: %q", lines)
	}
	if lines := r.ok("UID THREAD ORDEREDSUBJECT UTF-8 ALL"); len(lines) != 1 || lines[0] != "* THREAD (3)(1 (2)(4))(5 6)" {
		t.Errorf("THREAD ORDEREDSUBJECT: %q", lines)
	}
}

// SORT=DISPLAY (RFC 5957): DISPLAYFROM and DISPLAYTO order by the display name, or the
// address when there is none; an address without a domain ("From: d") sorts by its
// local part and a group by its name (imaptest's sort-display-from and -to orders),
// through go-imap's client. Before, "From: d" was dropped by the address parser and
// sorted first.
func TestSortDisplay(t *testing.T) {
	e := start(t, Config{})
	for _, hdr := range []string{
		"From: foo bar <a@b.c>\r\nTo: z: aa@aa.org;",
		"From: b@c.d\r\nTo: b@c.d",
		"From: d\r\nTo: d",
		"From: =?iso-8859-1?q?foo_aar?= <e@f.g>\r\nTo: empty:;",
		"From: =?iso-8859-1?q?foo_car?= <f@g.h>\r\nTo: a: xx@xx.org, yy@yy.org;",
	} {
		e.deliver(t, "alice@example.org", hdr+"\r\nSubject: s\r\n\r\nbody\r\n")
	}
	c := login(t, e, "alice@example.org", "secret pw", nil)
	if !c.Caps().Has("SORT=DISPLAY") {
		t.Fatalf("SORT=DISPLAY not announced: %v", c.Caps())
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     imapclient.SortKey
		reverse bool
		want    []uint32
	}{
		{"DISPLAYFROM", false, []uint32{2, 3, 4, 1, 5}},
		{"DISPLAYFROM", true, []uint32{5, 1, 4, 3, 2}},
		{"DISPLAYTO", false, []uint32{5, 2, 3, 4, 1}},
	} {
		got, err := c.Sort(&imapclient.SortOptions{
			SearchCriteria: &imap.SearchCriteria{},
			SortCriteria:   []imapclient.SortCriterion{{Key: tc.key, Reverse: tc.reverse}},
		}).Wait()
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SORT (%s reverse=%v) = %v, %v; want %v", tc.key, tc.reverse, got, err, tc.want)
		}
	}
}
