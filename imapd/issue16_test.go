package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// LIST "" "" answers the hierarchy delimiter and the root name (RFC 3501 §6.3.8), also
// when imapserver has dropped the empty pattern before the session sees it (issue 16
// item 1).
func TestListEmptyPatternGivesDelimiter(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, c := range []string{`LIST "" ""`, `LIST INBOX ""`} {
		lines := r.ok("%s", c)
		if len(lines) != 1 || lines[0] != `* LIST (\Noselect) "/" ""` {
			t.Errorf("%s: %q, want one `* LIST (\\Noselect) \"/\" \"\"`", c, lines)
		}
	}
	lines := r.ok(`LIST "" "*"`)
	if len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "INBOX") {
		t.Errorf(`LIST "" "*" after LIST "" "": %q`, lines)
	}
}

// MOVE into the selected mailbox answers OK with COPYUID, as Dovecot does: the messages
// get new UIDs in the same mailbox, keep their flags, and the old UIDs are expunged
// (issue 16 item 3; it answered NO [SERVERBUG]).
func TestMoveIntoSelectedMailbox(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for i := 0; i < 3; i++ {
		e.deliver(t, "alice@example.org", fmt.Sprintf("Subject: m%d\r\n\r\nx\r\n", i+1))
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	r.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	lines := r.ok("MOVE 2 inbox")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "* OK [COPYUID ") || !strings.Contains(lines[0], " 2 4]") || lines[1] != "* 2 EXPUNGE" {
		t.Fatalf("MOVE into INBOX: %q", lines)
	}
	lines = r.ok("UID MOVE 1 INBOX")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "* OK [COPYUID ") || !strings.Contains(lines[0], " 1 5]") || lines[1] != "* 1 EXPUNGE" {
		t.Fatalf("UID MOVE into INBOX: %q", lines)
	}
	r.ok("NOOP")
	lines = r.ok("FETCH 1:* (UID FLAGS)")
	if got := strings.Join(lines, "|"); got != `* 1 FETCH (UID 3 FLAGS (\Recent))|* 2 FETCH (UID 4 FLAGS (\Flagged \Recent))|* 3 FETCH (UID 5 FLAGS (\Recent))` {
		t.Fatalf("after MOVE into INBOX: %q", got)
	}
	lines = r.ok("STATUS INBOX (MESSAGES UIDNEXT)")
	if len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 3") || !strings.Contains(lines[0], "UIDNEXT 6") {
		t.Fatalf("status %q", lines)
	}
}

// A mailbox name that is not modified UTF-7 ("a&b": an '&' shift never closed, "&Jjo"
// likewise, "&U,BTFw-&ZeVnLIqe-": a null shift) is a client error: BAD or NO saying so,
// never NO [SERVERBUG] (issue 16 item 2, fixed by go-imap v2.0.0-beta.9's parser).
//
// Left out: a LIST pattern (LIST "" "a&b"), which beta.9 still answers [SERVERBUG]
// before the session sees it (imapserver's readListMailbox returns utf7.Decode's error
// as it is).
func TestBadModifiedUTF7MailboxIsClientError(t *testing.T) {
	e := start(t, Config{Trusted: true})
	e.deliver(t, "alice@example.org", msgA)
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	var cmds []string
	for _, name := range []string{`"a&b"`, `"&Jjo"`, `"&U,BTFw-&ZeVnLIqe-"`, `"INBOX/&"`} {
		cmds = append(cmds,
			"CREATE "+name, "DELETE "+name, "RENAME "+name+" x", "RENAME INBOX "+name,
			"SUBSCRIBE "+name, "UNSUBSCRIBE "+name, "STATUS "+name+" (MESSAGES)",
			"EXAMINE "+name, "SELECT "+name, "APPEND "+name+" {5}",
			`LIST `+name+` "*"`, `LSUB `+name+` "*"`,
		)
	}
	r.ok("SELECT INBOX")
	for _, name := range []string{`"a&b"`, `"&Jjo"`} {
		cmds = append(cmds, "COPY 1 "+name, "UID COPY 1 "+name, "MOVE 1 "+name, "UID MOVE 1 "+name)
	}
	for _, c := range cmds {
		lines, st := r.cmd("%s", c)
		if !strings.HasPrefix(st, "BAD") && !strings.HasPrefix(st, "NO") || strings.Contains(st, "SERVERBUG") {
			t.Errorf("%q: %s (%q)", c, st, lines)
		}
	}
	// The session is still usable, and nothing was created.
	if lines := r.ok(`LIST "" "*"`); strings.Contains(strings.Join(lines, "\n"), "&") {
		t.Errorf("LIST after bad names: %q", lines)
	}
	if lines := r.ok("FETCH 1 (UID)"); len(lines) != 1 {
		t.Errorf("FETCH after bad names: %q", lines)
	}
}

// ENVELOPE keeps RFC 5322 groups as RFC 3501 §7.4.2 marks them (a start marker with the
// group name as mailbox and NIL host, the members, an end marker of NILs; an empty group
// is the two markers) and keeps source-routed addresses with their route as the ADL
// (issue 16 item 4; imaptest's fetch-envelope messages). Before, the groups' markers were
// missing and <@route:user@domain> made From, Sender and Reply-To all NIL; then the route
// was dropped (go-imap's address has no ADL, and go-imap's imapserver, which served IMAP
// then, wrote go-imap's address). An address without a domain is kept with Dovecot's
// MISSING_DOMAIN as its host.
func TestEnvelopeGroupsAndRoutes(t *testing.T) {
	e := start(t, Config{Trusted: true})
	hdr := "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"
	for _, m := range []string{
		hdr + "From: user@domain (Real Name)\r\nTo: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: group:;, group2: (foo) ;\r\n\r\nbody\r\n",
		hdr + "From: <@route:user@domain>\r\n\r\nbody\r\n",
		hdr + "From: <@r1,@r2:user@domain>, \"Q. Name\" <a@b.org>\r\nTo: undisclosed-recipients:;\r\n\r\nbody\r\n",
		hdr + "From: <user-from (comment)@ (comment) domain.org>\r\nSender: =?utf-8?q?J=C3=B6rg?= <j@x.org>\r\n\r\nbody\r\n",
		hdr + "From: d\r\nTo: a@b, <e>, f@;\r\n\r\nbody\r\n",
	} {
		e.deliver(t, "alice@example.org", m)
	}
	want := []string{
		`* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) ((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL))`,
		`* 2 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) NIL NIL NIL NIL NIL))`,
		`* 3 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@r1,@r2" "user" "domain")("Q. Name" NIL "a" "b.org")) ((NIL "@r1,@r2" "user" "domain")("Q. Name" NIL "a" "b.org")) ((NIL "@r1,@r2" "user" "domain")("Q. Name" NIL "a" "b.org")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL))`,
		`* 4 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL NIL "user-from" "domain.org")) (("=?utf-8?q?J=C3=B6rg?=" NIL "j" "x.org")) ((NIL NIL "user-from" "domain.org")) NIL NIL NIL NIL NIL))`,
		`* 5 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL NIL "d" "MISSING_DOMAIN")) ((NIL NIL "d" "MISSING_DOMAIN")) ((NIL NIL "d" "MISSING_DOMAIN")) ((NIL NIL "a" "b")(NIL NIL "e" "MISSING_DOMAIN")(NIL NIL "f" "MISSING_DOMAIN")) NIL NIL NIL NIL))`,
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	for round := 0; round < 2; round++ { // made from the file, then from the caches
		lines := r.ok("FETCH 1:* ENVELOPE")
		if len(lines) != len(want) {
			t.Fatalf("round %d: %q", round, lines)
		}
		for i := range want {
			// No space between the addresses (as Dovecot: RFC 9051 §9, env-from), and
			// the UID first.
			want := strings.Replace(want[i], "FETCH (", fmt.Sprintf("FETCH (UID %d ", i+1), 1)
			if lines[i] != want {
				t.Errorf("round %d:\n got %s\nwant %s", round, lines[i], want)
			}
		}
	}
	// The envelope of an attached message in BODYSTRUCTURE too.
	e.deliver(t, "alice@example.org", "Content-Type: message/rfc822\r\n\r\n"+hdr+"From: <@route:user@domain>\r\nTo: list:;\r\n\r\nbody\r\n")
	r.ok("NOOP")
	lines := r.ok("FETCH 6 BODYSTRUCTURE")
	if len(lines) != 1 || !strings.Contains(lines[0], `((NIL NIL "user" "domain")) ((NIL NIL "user" "domain")) ((NIL NIL "user" "domain")) ((NIL NIL "list" NIL)(NIL NIL NIL NIL))`) {
		t.Errorf("BODYSTRUCTURE of an attached message: %q", lines)
	}
}

// An envelope the index cached before groups and routes were kept (no version) is made
// again from the message, and cached over.
func TestEnvelopeOldIndexCopyRemade(t *testing.T) {
	e := start(t, Config{Trusted: true, CacheSize: -1})
	uid := e.deliver(t, "alice@example.org", "From: <@route:user@domain>\r\nTo: list:;\r\n\r\nbody\r\n")
	u, err := e.store.Open(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	mb, err := u.Mailbox(context.Background(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.CacheEnvelope(context.Background(), mb, uid, []byte(`{"Subject":"old"}`)); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	for round := 0; round < 2; round++ {
		lines := r.ok("FETCH 1 ENVELOPE")
		if len(lines) != 1 || strings.Contains(lines[0], "old") || !strings.Contains(lines[0], `"user" "domain")) ((NIL NIL "list" NIL)(NIL NIL NIL NIL))`) {
			t.Fatalf("round %d: %q", round, lines)
		}
	}
}

// SEARCH FROM, TO, CC and BCC match the addresses with comments, routes and folding left
// out, beside the field as it is: FROM user-from@domain.org finds
// <user-from (comment)@ (comment) domain.org> (issue 16 item 5; imaptest's
// search-addresses, whose messages these are).
func TestSearchAddressesIgnoreComments(t *testing.T) {
	e := start(t, Config{Trusted: true})
	for _, m := range []string{
		"From: user-from@domain.org\r\nTo: user-to@domain.org\r\nCc: user-cc@domain.org\r\nBcc: user-bcc@domain.org\r\n\r\nbody\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: RealTo <user-to@domain.org>\r\nCc: RealCc <user-cc@domain.org>\r\nBcc: RealBcc <user-bcc@domain.org>\r\n\r\nbody2\r\n",
		"From: <user-from (comment)@ (comment) domain.org>\r\nTo: <user-to@domain.org>\r\nCc: <user-cc@domain.org>\r\nBcc: <user-bcc@domain.org>\r\n\r\nbody3\r\n",
		"From: user-from@domain.org (RealFrom)\r\nTo: user-to@domain.org (RealTo)\r\nCc: user-cc@domain.org (RealCc)\r\nBcc: user-bcc@domain.org (RealBcc)\r\n\r\nbody4\r\n",
		"From: user-from1@domain.org, user-from2@domain.org\r\nCc: user-cc@domain.org\r\n\r\nbody5\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  groupname2: groupuser3@domain.org;\r\n\r\nbody6\r\n",
		"From: RealFrom <user-from@domain.org>\r\nTo: groupname:;\r\n\r\nbody7\r\n",
		"From: <@route:routed@domain.org>\r\nTo: \"Last, First\" (x) <l.f (y) @ (z) example.org>\r\n\r\nbody8\r\n",
	} {
		e.deliver(t, "alice@example.org", m)
	}
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	r.ok("SELECT INBOX")
	for q, want := range map[string]string{
		"FROM user-from@domain.org": "1 2 3 4 6 7",
		"TO user-to@domain.org":     "1 2 3 4",
		"CC user-cc@domain.org":     "1 2 3 4 5",
		"BCC user-bcc@domain.org":   "1 2 3 4",
		"FROM realfrom":             "2 4 6 7",
		"TO realto":                 "2 4",
		`HEADER FROM ""`:            "1 2 3 4 5 6 7 8",
		`HEADER TO ""`:              "1 2 3 4 6 7 8",
		"FROM ser-fro":              "1 2 3 4 5 6 7",
		"FROM ealfro":               "2 4 6 7",
		"FROM user-from1":           "5",
		"FROM user-from2":           "5",
		"TO groupname":              "6 7",
		"TO groupname2":             "6",
		"TO groupuser1":             "6",
		"TO groupuser3":             "6",
		"TO groupuser4":             "",
		"FROM routed@domain.org":    "8",
		"TO l.f@example.org":        "8",
		`TO "Last, First"`:          "8",
		"FROM user-from@domain.org NOT FROM realfrom": "1 3",
	} {
		lines := r.ok("SEARCH %s", q)
		if got := strings.Join(lines, "|"); got != strings.TrimSpace("* SEARCH "+want) {
			t.Errorf("SEARCH %s = %q, want %q", q, got, want)
		}
	}
}

// parseAddressList never panics and never makes an address that reads as a group marker
// outside balanced markers, on every prefix and every one-byte deletion of tricky input.
func TestParseAddressListRobust(t *testing.T) {
	seeds := []string{
		`group: g1@d1.org, "x:y" <g2@d2.org>;, group2: (foo) ;`,
		`<@r1,@r2:user@domain> (c (nested) \) x), "Q\" N" <a (b) @ [1.2.3.4]>`,
		`=?utf-8?q?J=C3=B6rg?= <j@x.org>, user@domain (Real Name), a:b:c@d;;`,
		"To: x\r\n y@z, <>, <@>, @, :;, \"unterminated, (unterminated",
	}
	for _, s := range seeds {
		var inputs []string
		for i := 0; i <= len(s); i++ {
			inputs = append(inputs, s[:i])
			if i < len(s) {
				inputs = append(inputs, s[:i]+s[i+1:])
			}
		}
		for _, in := range inputs {
			depth := 0
			for _, a := range parseAddressList(in) {
				switch {
				case a.Host != "":
					if a.Mailbox == "" {
						t.Errorf("%q: address without mailbox %+v", in, a)
					}
				case a.Mailbox != "":
					depth++
				default:
					depth--
				}
				if depth < 0 || depth > 1 {
					t.Errorf("%q: unbalanced group markers", in)
				}
			}
			if depth != 0 {
				t.Errorf("%q: group not ended", in)
			}
			_ = addressText(in)
		}
	}
}
