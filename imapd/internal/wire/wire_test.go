package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parser returns a parser over input and the continuation requests it sends.
func parser(input string, lim Limits) (*Parser, *[]string) {
	var conts []string
	p := NewParser(bufio.NewReader(strings.NewReader(input)), lim, func(text string) error {
		conts = append(conts, text)
		return nil
	})
	p.SetAuthenticated(true)
	return p, &conts
}

func parseOne(t *testing.T, line string) *Command {
	t.Helper()
	p, _ := parser(line+"\r\n", Limits{})
	c, err := p.ReadCommand()
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return c
}

func TestCommands(t *testing.T) {
	c := parseOne(t, `a1 LOGIN "al\"ice" {3+}`+"\r\npw!")
	if c.Tag != "a1" || c.Name != "LOGIN" || c.User != `al"ice` || c.Password != "pw!" {
		t.Errorf("LOGIN: %+v", c)
	}
	c = parseOne(t, `t uid fetch 1:*,7 (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From "To")]<0.100> BINARY[2]<5.6> BINARY.SIZE[] RFC822.SIZE BODY) (CHANGEDSINCE 12345 VANISHED)`)
	want := &Fetch{
		Set: NumSet{Ranges: []Range{{1, 0}, {7, 7}}},
		Atts: []FetchAtt{{Name: "UID"}, {Name: "FLAGS"},
			{Name: "BODY.PEEK[]", Section: &Section{Part: []int{1, 2}, Specifier: "HEADER.FIELDS", Fields: []string{"From", "To"}}, Partial: &Partial{0, 100}},
			{Name: "BINARY[]", Section: &Section{Part: []int{2}}, Partial: &Partial{5, 6}},
			{Name: "BINARY.SIZE[]", Section: &Section{}},
			{Name: "RFC822.SIZE"}, {Name: "BODY"}},
		ChangedSince: 12345, Vanished: true,
	}
	if !c.UID || c.Name != "FETCH" || !reflect.DeepEqual(c.Fetch, want) {
		t.Errorf("UID FETCH:\n got %+v\nwant %+v", c.Fetch, want)
	}
	c = parseOne(t, `x FETCH $ FAST`)
	if !c.Fetch.Set.SearchRes || len(c.Fetch.Atts) != 3 {
		t.Errorf("FETCH $ FAST: %+v", c.Fetch)
	}
	c = parseOne(t, `x FETCH 2 body[text]`)
	if c.Fetch.Atts[0].Name != "BODY[]" || c.Fetch.Atts[0].Section.Specifier != "TEXT" {
		t.Errorf("FETCH body[text]: %+v", c.Fetch.Atts[0])
	}
	c = parseOne(t, `x STORE 1:3 (UNCHANGEDSINCE 9) +FLAGS.SILENT (\Seen $Junk)`)
	if s := c.Store; s.Op != '+' || !s.Silent || *s.UnchangedSince != 9 || !reflect.DeepEqual(s.Flags, []string{`\Seen`, "$Junk"}) {
		t.Errorf("STORE: %+v", s)
	}
	c = parseOne(t, `x STORE 1 -FLAGS \Deleted \Seen`)
	if s := c.Store; s.Op != '-' || !reflect.DeepEqual(s.Flags, []string{`\Deleted`, `\Seen`}) {
		t.Errorf("STORE bare flags: %+v", s)
	}
	c = parseOne(t, `x SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:10 5:50)) CONDSTORE)`)
	if q := c.Select.QResync; q == nil || q.UIDValidity != 67890007 || q.ModSeq != 20050715194045000 || len(q.KnownUIDs.Ranges) != 3 || q.SeqMatchUIDs.Ranges[0] != (Range{5, 50}) || !c.Select.CondStore {
		t.Errorf("SELECT QRESYNC: %+v %+v", c.Select, q)
	}
	c = parseOne(t, `x LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %/* foo]) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))`)
	if l := c.List; !reflect.DeepEqual(l.Select, []string{"SUBSCRIBED", "RECURSIVEMATCH"}) || !reflect.DeepEqual(l.Patterns, []string{"INBOX", "%/*", "foo]"}) ||
		!reflect.DeepEqual(l.Return, []string{"CHILDREN", "STATUS"}) || !reflect.DeepEqual(l.ReturnStatus, []string{"MESSAGES", "UNSEEN"}) {
		t.Errorf("LIST-EXTENDED: %+v", l)
	}
	c = parseOne(t, `x LIST "" ""`)
	if !reflect.DeepEqual(c.List.Patterns, []string{""}) {
		t.Errorf(`LIST "" "": the empty pattern is kept (issue 16 item 1): %+v`, c.List)
	}
	c = parseOne(t, `x UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM "a b" YOUNGER 60) NOT 1:5 UNKEYWORD $x SINCE 1-Feb-2024 MODSEQ "/flags/\\draft" all 620162338`)
	s := c.Search
	if !reflect.DeepEqual(s.Return, []string{"MIN", "COUNT"}) || s.Charset != "UTF-8" || len(s.Key.Keys) != 4 {
		t.Fatalf("SEARCH: %+v", s)
	}
	if or := s.Key.Keys[0]; or.Op != "OR" || or.Keys[0].Op != "AND" || or.Keys[0].Keys[0].Str != "a b" || or.Keys[0].Keys[1].Num != 60 || or.Keys[1].Op != "NOT" || or.Keys[1].Keys[0].Set.Ranges[0] != (Range{1, 5}) {
		t.Errorf("SEARCH OR: %+v", or)
	}
	if k := s.Key.Keys[2]; k.Op != "SINCE" || !k.Date.Equal(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("SEARCH SINCE: %+v", k)
	}
	if k := s.Key.Keys[3]; k.Op != "MODSEQ" || k.Num != 620162338 {
		t.Errorf("SEARCH MODSEQ: %+v", k)
	}
	c = parseOne(t, `x UID SORT RETURN (COUNT) (REVERSE DATE SUBJECT) UTF-8 ALL`)
	if c.Sort.Criteria[0] != (SortCriterion{"DATE", true}) || c.Sort.Charset != "UTF-8" || c.Sort.Return[0] != "COUNT" {
		t.Errorf("SORT: %+v", c.Sort)
	}
	c = parseOne(t, `x THREAD REFERENCES US-ASCII SUBJECT "x"`)
	if c.Thread.Algorithm != "REFERENCES" || c.Thread.Key.Keys[0].Str != "x" {
		t.Errorf("THREAD: %+v", c.Thread)
	}
	c = parseOne(t, `x ID ("name" "sodr" "version" NIL)`)
	if !reflect.DeepEqual(c.ID, []string{"name", "sodr", "version", ""}) {
		t.Errorf("ID: %q", c.ID)
	}
	if c = parseOne(t, `x ID NIL`); c.ID != nil {
		t.Errorf("ID NIL: %q", c.ID)
	}
	c = parseOne(t, `x CREATE Sent (USE (\Sent))`)
	if c.Mailbox != "Sent" || c.SpecialUse[0] != `\Sent` {
		t.Errorf("CREATE USE: %+v", c)
	}
	c = parseOne(t, `x STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)`)
	if !reflect.DeepEqual(c.Status, []string{"UIDNEXT", "MESSAGES", "HIGHESTMODSEQ"}) {
		t.Errorf("STATUS: %q", c.Status)
	}
	c = parseOne(t, `x SETQUOTA "" (STORAGE 512)`)
	if c.Quota[0] != (QuotaLimit{"STORAGE", 512}) {
		t.Errorf("SETQUOTA: %+v", c.Quota)
	}
	c = parseOne(t, `x AUTHENTICATE PLAIN AGFsaWNlAHB3`)
	if c.Mechanism != "PLAIN" || *c.InitialResponse != "AGFsaWNlAHB3" {
		t.Errorf("AUTHENTICATE: %+v", c)
	}
	c = parseOne(t, `x UID EXPUNGE 3000:3002`)
	if !c.UID || c.Set.Ranges[0] != (Range{3000, 3002}) {
		t.Errorf("UID EXPUNGE: %+v", c)
	}
	if c = parseOne(t, `x ENABLE CONDSTORE qresync`); !reflect.DeepEqual(c.Caps, []string{"CONDSTORE", "QRESYNC"}) {
		t.Errorf("ENABLE: %q", c.Caps)
	}
}

// MULTIAPPEND: messages stream one by one, with flags and dates, synchronising literals
// after a continuation request and LITERAL+ ones without.
func TestAppend(t *testing.T) {
	in := "a APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello (\\Draft) {3+}\r\nabc ~{2}\r\nxy\r\nb NOOP\r\n"
	p, conts := parser(in, Limits{})
	c, err := p.ReadCommand()
	if err != nil || c.Append == nil || c.Mailbox != "saved-messages" {
		t.Fatalf("APPEND: %+v %v", c, err)
	}
	var bodies []string
	for {
		m, err := p.NextAppend()
		if err != nil {
			t.Fatal(err)
		}
		if m == nil {
			break
		}
		b, _ := io.ReadAll(m.Body)
		bodies = append(bodies, string(b))
		if len(bodies) == 1 && (m.Flags[0] != `\Seen` || m.Date.Day() != 7 || m.Date.Hour() != 21) {
			t.Errorf("first message: %+v", m)
		}
		if len(bodies) == 3 && !m.Binary {
			t.Errorf("literal8 not marked binary")
		}
	}
	if !reflect.DeepEqual(bodies, []string{"hello", "abc", "xy"}) || len(*conts) != 2 {
		t.Errorf("bodies %q, continuations %q", bodies, *conts)
	}
	if c, err := p.ReadCommand(); err != nil || c.Name != "NOOP" {
		t.Errorf("after APPEND: %+v %v", c, err)
	}
}

// CATENATE (RFC 4469): parts stream one by one, URLs as strings, TEXT literals
// synchronising or not; a MULTIAPPEND mixes it with plain messages; TEXT beyond
// MaxMessage in all is NO [TOOBIG] without a continuation request, and the next command
// is read.
func TestCatenate(t *testing.T) {
	in := "a APPEND INBOX (\\Seen) CATENATE (URL \"/INBOX/;uid=1\" TEXT {5}\r\nhello TEXT ~{2+}\r\nxy) {3+}\r\nabc\r\nb NOOP\r\n"
	p, conts := parser(in, Limits{})
	if _, err := p.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := p.NextAppend()
		if err != nil {
			t.Fatal(err)
		}
		if m == nil {
			break
		}
		if !m.Catenate {
			b, _ := io.ReadAll(m.Body)
			got = append(got, "msg:"+string(b))
			continue
		}
		for {
			part, err := p.NextCatenatePart()
			if err != nil {
				t.Fatal(err)
			}
			if part == nil {
				break
			}
			if part.Text == nil {
				got = append(got, "url:"+part.URL)
				continue
			}
			b, _ := io.ReadAll(part.Text)
			got = append(got, fmt.Sprintf("text:%s:%v", b, part.Binary))
		}
	}
	if want := []string{"url:/INBOX/;uid=1", "text:hello:false", "text:xy:true", "msg:abc"}; !reflect.DeepEqual(got, want) || len(*conts) != 1 {
		t.Errorf("parts %q, continuations %q", got, *conts)
	}
	if c, err := p.ReadCommand(); err != nil || c.Name != "NOOP" {
		t.Errorf("after APPEND: %+v %v", c, err)
	}

	p, conts = parser("a APPEND INBOX CATENATE (TEXT {3+}\r\nabc TEXT {9}\r\nz NOOP\r\n", Limits{MaxMessage: 10})
	p.SetAuthenticated(true)
	p.ReadCommand()
	p.NextAppend()
	if part, err := p.NextCatenatePart(); err != nil || part.Size != 3 {
		t.Fatalf("first part: %+v %v", part, err)
	}
	var e *Error
	if _, err := p.NextCatenatePart(); !errors.As(err, &e) || e.Code != "TOOBIG" || len(*conts) != 0 {
		t.Fatalf("TEXT beyond MaxMessage: %v, continuations %q", err, *conts)
	}
	if c, err := p.ReadCommand(); err != nil || c.Name != "NOOP" {
		t.Errorf("after a refused CATENATE: %+v %v", c, err)
	}
}

// wantErr parses input's first command and checks the error's kind and code, and that the
// next command ("z NOOP") is then read: the session survives.
func wantErr(t *testing.T, input string, lim Limits, kind Kind, code string) {
	t.Helper()
	p, conts := parser(input+"z NOOP\r\n", lim)
	c, err := p.ReadCommand()
	if err == nil && c.Append != nil {
		_, err = p.NextAppend()
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%.60q: got %v, want a protocol error", input, err)
	}
	if e.Kind != kind || e.Code != code || e.Fatal {
		t.Fatalf("%.60q: got %v (fatal %v), want kind %d code %q", input, e, e.Fatal, kind, code)
	}
	if len(*conts) != 0 {
		t.Errorf("%.60q: sent continuation %q for a refused literal", input, *conts)
	}
	c, err = p.ReadCommand()
	if err != nil || c.Name != "NOOP" {
		t.Fatalf("%.60q: the next command: %+v %v", input, c, err)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{
		"a FETCH 0 FLAGS\r\n",                                  // sequence numbers are nonzero
		"a FETCH 1:4294967296 FLAGS\r\n",                       // beyond 32 bits
		"a FETCH 1 BODY[]<4294967296.1>\r\n",                   // absurd partial offset
		"a FETCH 1 BODY[]<0.0>\r\n",                            // zero-length partial
		"a FETCH 1 BODY[1.0]\r\n",                              // part 0
		"a FETCH 1 BODY[MIME]\r\n",                             // MIME of no part
		"a FETCH 1 (FLAGS\r\n",                                 // unclosed list
		"a FETCH 1 FLAGS (VANISHED)\r\n",                       // VANISHED without CHANGEDSINCE
		"a SEARCH FROM\r\n",                                    // missing argument
		"a SEARCH NOT\r\n",                                     //
		"a SEARCH BEFORE 31-Feb-2024\r\n",                      // no such date
		"a SEARCH LARGER 99999999999999999999999\r\n",          // beyond 63 bits
		"a SEARCH (ALL\r\n",                                    //
		"a SEARCH FOO\r\n",                                     // unknown key
		"a STORE 1 FLAGS.NOISY (\\Seen)\r\n",                   //
		"a LOGIN alice\r\n",                                    //
		"a LOGIN \"al\x00ice\" x\r\n",                          // NUL
		"a FROB\r\n",                                           // unknown command
		"a UID LOGOUT\r\n",                                     //
		"a SELECT INBOX (FOO)\r\n",                             //
		"a STATUS INBOX (MESSAGES BOGUS)\r\n",                  //
		"a ID (\"a23456789012345678901234567890x\" \"v\")\r\n", // field over 30 octets (imaptest's id test)
		"a LIST \"\" x {3}\r\n",                                // a synchronising literal after the error: never asked for
		"a LOGIN {5+}\r\nalice x y\r\n",                        // non-synchronising literal consumed, then the error
		"a APPEND INBOX\r\n",                                   // no message
	} {
		wantErr(t, in, Limits{}, Bad, "")
	}
}

// Literal bombs: a synchronising literal too big is refused before the client sends it,
// before login (a string, or an APPEND message before login) and after (APPEND beyond
// the message size limit: NO [TOOBIG], RFC 7889).
func TestLiteralBombs(t *testing.T) {
	wantErr(t, "a LOGIN {999999999}\r\n", Limits{}, Bad, "TOOBIG")
	wantErr(t, "a LOGIN alice {999999999}\r\n", Limits{}, Bad, "TOOBIG")
	wantErr(t, "a APPEND INBOX {999999999}\r\n", Limits{}, No, "TOOBIG")
	wantErr(t, "a APPEND INBOX (\\Seen) {999999999}\r\n", Limits{MaxMessage: 1000}, No, "TOOBIG")
	wantErr(t, "a SEARCH TEXT {99999999999999999}\r\n", Limits{}, Bad, "TOOBIG")
	// Before login, an APPEND message is held to the string limit.
	p, conts := parser("a APPEND INBOX {70000}\r\nz NOOP\r\n", Limits{})
	p.SetAuthenticated(false)
	c, _ := p.ReadCommand()
	if _, err := p.NextAppend(); err == nil || len(*conts) != 0 {
		t.Errorf("APPEND of 70000 octets before login: %v, continuations %q", err, *conts)
	}
	if c, err := p.ReadCommand(); err != nil || c.Name != "NOOP" {
		t.Errorf("after: %+v %v (%+v)", c, err, c)
	}
	_ = c
	// A non-synchronising literal too big is skipped when small enough...
	wantErr(t, "a LOGIN {100+}\r\n"+strings.Repeat("x", 100)+" pw\r\n", Limits{MaxStringLiteral: 50}, Bad, "TOOBIG")
	// ...and closes the connection when too big to skip.
	p, _ = parser("a LOGIN {999999999+}\r\n", Limits{})
	_, err := p.ReadCommand()
	var e *Error
	if !errors.As(err, &e) || !e.Fatal {
		t.Errorf("LITERAL+ bomb: %v, want fatal", err)
	}
	// An over-long line is refused and the next command read.
	wantErr(t, "a NOOP "+strings.Repeat("x", 100)+"\r\n", Limits{MaxLine: 50}, Bad, "TOOBIG")
}

// Nesting, long lists and huge sequence sets are bounded.
func TestNestingAndListLimits(t *testing.T) {
	deep := "a SEARCH " + strings.Repeat("(", 100) + "ALL" + strings.Repeat(")", 100) + "\r\n"
	wantErr(t, deep, Limits{}, Bad, "LIMIT")
	wantErr(t, "a SEARCH "+strings.Repeat("NOT ", 100)+"ALL\r\n", Limits{}, Bad, "LIMIT")
	wantErr(t, "a SEARCH "+strings.Repeat("OR ALL ", 100)+"ALL\r\n", Limits{}, Bad, "LIMIT")
	var set []string
	for i := 1; i <= 200; i++ {
		set = append(set, "1")
	}
	wantErr(t, "a FETCH "+strings.Join(set, ",")+" FLAGS\r\n", Limits{MaxItems: 100}, Bad, "LIMIT")
	wantErr(t, "a STORE 1 FLAGS ("+strings.Repeat("x ", 200)+"y)\r\n", Limits{MaxItems: 100}, Bad, "LIMIT")
	// Within the bounds, nesting parses.
	ok := "a SEARCH " + strings.Repeat("(", 20) + "ALL" + strings.Repeat(")", 20) + "\r\n"
	p, _ := parser(ok, Limits{})
	if _, err := p.ReadCommand(); err != nil {
		t.Errorf("20 levels: %v", err)
	}
}

func TestDecodeMailbox(t *testing.T) {
	for in, want := range map[string]string{
		"INBOX":                           "INBOX",
		"&ZeVnLIqe-":                      "日本語",
		"~peter/mail/&U,BTFw-/&ZeVnLIqe-": "~peter/mail/台北/日本語",
		"a&-b":                            "a&b",
		"Entw&APw-rfe":                    "Entwürfe",
	} {
		got, err := DecodeMailbox(in)
		if err != nil || got != want {
			t.Errorf("DecodeMailbox(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"a&b", "&Jjo", "&U,BTFw-&ZeVnLIqe-", "INBOX/&", "&AGE-", "&2D0-"} {
		if got, err := DecodeMailbox(in); err == nil {
			t.Errorf("DecodeMailbox(%q) = %q, want an error", in, got)
		}
	}
}

// An over-long line that announces a non-synchronising literal is refused, and the
// literal that comes with it is skipped, not read as the next command.
func TestLongLineSkipsItsLiteral(t *testing.T) {
	for _, maxLine := range []int{100, 5000} { // within bufio's buffer, and beyond it
		long := "a APPEND INBOX (" + strings.Repeat("x ", maxLine) + ") {16+}\r\nb DELETE INBOX\r\n\r\n"
		p, _ := parser(long+"c NOOP\r\n", Limits{MaxLine: maxLine})
		c, err := p.ReadCommand()
		var e *Error
		if !errors.As(err, &e) || e.Code != "TOOBIG" || c.Tag != "a" {
			t.Fatalf("MaxLine %d: %+v %v, want a BAD [TOOBIG]", maxLine, c, err)
		}
		c, err = p.ReadCommand()
		if err != nil || c.Tag != "c" {
			t.Fatalf("MaxLine %d: next command %+v %v, want c NOOP (the literal ran)", maxLine, c, err)
		}
	}
}

// ReadCommand never returns a nil command with an *Error: the session answers it with
// cmd.Tag. Here the rest of an APPEND the caller left unread ends in an over-long line.
func TestReadCommandErrorHasCommand(t *testing.T) {
	p, _ := parser("a APPEND INBOX {2}\r\nhi"+strings.Repeat("x", 200)+"\r\nb NOOP\r\n", Limits{MaxLine: 100})
	if _, err := p.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.NextAppend(); err != nil {
		t.Fatal(err)
	}
	c, err := p.ReadCommand()
	var e *Error
	if !errors.As(err, &e) || c == nil {
		t.Fatalf("%+v %v, want a command and a BAD", c, err)
	}
	if c, err = p.ReadCommand(); err != nil || c.Tag != "b" {
		t.Fatalf("next: %+v %v", c, err)
	}
}
