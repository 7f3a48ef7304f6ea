package headers

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/policy"
)

func walkFile(t testing.TB, file string) *content.Message {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := content.WalkBytes(raw, content.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustParse(t testing.TB, name, text string) *Map {
	t.Helper()
	m, err := ParseMap(name, strings.NewReader(text), PCRE, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTableClasses checks which table sees which line, as Postfix's cleanup classifies
// them: primary headers, MIME headers anywhere, attached-message headers, body lines.
func TestTableClasses(t *testing.T) {
	all := func(name string) *Map { return mustParse(t, name, "/^(.+)$/ WARN $1\n") }
	tables := Tables{Header: all("h"), MIME: all("m"), Nested: all("n"), Body: all("b")}
	rep := tables.Check(walkFile(t, "../content/testdata/rfc822.eml"))
	got := map[string][]string{}
	for _, f := range rep.Findings {
		got[f.Table] = append(got[f.Table], f.Input)
	}
	want := map[string][]string{
		TableHeader: {"From: forwarder@example.org", "To: rcpt@example.com", "Subject: Fwd: your parcel", "Date: Mon, 23 Nov 2026 10:00:00 +0000"},
		TableMIME: {"MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="fwd"`, "Content-Type: text/plain",
			"Content-Type: message/rfc822", "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="inner"`,
			"Content-Type: text/plain", `Content-Type: application/octet-stream; name="label.scr"`, "Content-Transfer-Encoding: base64"},
		TableNested: {"From: courier@example.net", "Subject: Parcel notice", "X-Mailer: Advanced Mass Sender v 3.21b"},
	}
	for table, w := range want {
		if strings.Join(got[table], "|") != strings.Join(w, "|") {
			t.Errorf("%s saw\n%q\nwant\n%q", table, got[table], w)
		}
	}
	body := strings.Join(got[TableBody], "|")
	for _, l := range []string{"--fwd", "See the forwarded message.", "--inner", "Print the label.", "--inner--", "--fwd--", "AACAAAAAUEUAAA=="} {
		if !strings.Contains(body, l) {
			t.Errorf("body_checks did not see %q in %q", l, body)
		}
	}
	if strings.Contains(body, "Content-Type") || strings.Contains(body, "X-Mailer") {
		t.Errorf("body_checks saw a header: %q", body)
	}
	if rep.Decisive == nil || !rep.Warn || rep.Reject {
		t.Errorf("report flags: %+v", rep)
	}
}

func TestFoldedHeaderIsOneLogicalLine(t *testing.T) {
	m := mustParse(t, "h", "/^Subject: one\\ntwo$/ REJECT folded\n/^Subject: one two/ REJECT unfolded\n")
	msg, _ := content.WalkBytes([]byte("Subject: one\r\ntwo\r\n\r\nbody\r\n"), content.Limits{})
	_ = msg
	msg, _ = content.WalkBytes([]byte("Subject: one\r\n two\r\n\r\nbody\r\n"), content.Limits{})
	rep := (&Tables{Header: m}).Check(msg)
	// Postfix joins the physical lines of a header with "\n" (keeping the folding
	// white space), so neither pattern matches "one\n two"; a pattern with \s+ does.
	if len(rep.Findings) != 0 {
		t.Fatalf("unexpected hit %+v", rep.Findings)
	}
	m = mustParse(t, "h", "/^Subject: one\\s+two$/ REJECT folded\n")
	rep = (&Tables{Header: m}).Check(msg)
	if !rep.Reject || rep.Decisive.Input != "Subject: one\n two" {
		t.Fatalf("got %+v", rep.Decisive)
	}
}

func TestShippedMapsOnSamples(t *testing.T) {
	p, err := New(Config{HeaderChecks: "maps/header_checks.pcre", MIMEHeaderChecks: "maps/mime_header_checks.pcre", BodyChecks: "maps/body_checks.pcre"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file, table, action, reason string
		text                        string
	}{
		{"worm-pif.eml", TableHeader, "REJECT", "headers.reject", `5.7.1 worm-like subject "your details"`},
		{"worm-double-ext.eml", TableMIME, "REJECT", "headers.reject", "5.7.1 attachment type .scr is not accepted"},
		{"worm-rfc2231.eml", TableMIME, "REJECT", "headers.reject", "5.7.1 attachment type .exe is not accepted"},
		{"rfc822.eml", TableNested, "REJECT", "headers.reject", `5.7.1 bulk mailer "Advanced Mass Sender" is not accepted`},
		{"executables.eml", TableBody, "REJECT", "headers.reject", "5.7.1 executable content is not accepted"},
		{"worm-zip.eml", "", "", "headers.none", ""}, // a zip hides its content from maps
		{"html-urls.eml", "", "", "headers.none", ""},
	}
	for _, c := range cases {
		raw, _ := os.ReadFile("../content/testdata/" + c.file)
		tx := policy.NewTransaction(policy.Conn{})
		tx.Message = policy.NewMessage(raw, time.Now())
		r := p.CheckData(context.Background(), tx)
		if r.Reason != c.reason || r.Facts["table"] != c.table || r.Facts["action"] != c.action || r.Facts["text"] != c.text {
			t.Errorf("%s: got %s %v %v %q (%v), want %s %s %s %q", c.file, r.Reason, r.Facts["table"], r.Facts["action"], r.Facts["text"],
				r.Facts["line"], c.reason, c.table, c.action, c.text)
		}
		if c.action == "REJECT" && !strings.HasPrefix(r.Facts["reply"].(string), "550 5.7.1 ") {
			t.Errorf("%s: reply %q", c.file, r.Facts["reply"])
		}
		decl := p.DeclareFacts()
		for k, v := range r.Facts {
			if d, ok := decl[k]; !ok || typeOf(d) != typeOf(v) {
				t.Errorf("fact %s (%T) not declared as such (%T)", k, v, d)
			}
		}
	}
}

func typeOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case []string:
		return "[]string"
	case []map[string]any:
		return "[]map"
	}
	return "other"
}

func TestActions(t *testing.T) {
	m := mustParse(t, "a", strings.Join([]string{
		"/^X-Hold:/ HOLD held", "/^X-Warn:/ WARN w", "/^X-Pre:/ PREPEND X-Tag: yes", "/^X-Bcc:/ BCC audit@example.com",
		"/^X-Red:/ REDIRECT trap@example.com", "/^X-Fil:/ FILTER smtp:[127.0.0.1]:10025", "/^X-Dunno:/ DUNNO",
		"/^X-Defer:/ DEFER 4.7.1 later", "/^X-Num:/ 554 5.7.0 go away", "/^X-Disc:/ DISCARD bye", "/^X-Pass:/ PASS",
	}, "\n"))
	check := func(hdr string) *Report {
		msg, _ := content.WalkBytes([]byte(hdr+"\r\n\r\nbody\r\n"), content.Limits{})
		return (&Tables{Header: m}).Check(msg)
	}
	rep := check("X-Hold: 1\r\nX-Warn: 1\r\nX-Pre: 1\r\nX-Bcc: 1\r\nX-Red: 1\r\nX-Fil: 1\r\nX-Dunno: 1")
	if !rep.Hold || !rep.Warn || rep.Redirect != "trap@example.com" || rep.Filter != "smtp:[127.0.0.1]:10025" ||
		len(rep.BCC) != 1 || len(rep.Prepend) != 1 || rep.Reject || rep.Decisive.Action != "HOLD" || len(rep.Findings) != 7 {
		t.Errorf("collected actions: %+v", rep)
	}
	res := ReportResult(rep)
	if res.Status != policy.StatusNeutral || res.Reason != "headers.hold" || len(res.Headers) != 1 || res.Headers[0].Name != "X-Tag" {
		t.Errorf("result %+v", res)
	}
	rep = check("X-Warn: 1\r\nX-Defer: 1\r\nX-Num: 1")
	if !rep.Defer || len(rep.Findings) != 2 || rep.Decisive.Reply() != "450 4.7.1 later" {
		t.Errorf("defer stops: %+v %q", rep, rep.Decisive.Reply())
	}
	rep = check("X-Num: 1")
	if !rep.Reject || rep.Defer || rep.Decisive.Reply() != "554 5.7.0 go away" {
		t.Errorf("numeric: %q", rep.Decisive.Reply())
	}
	rep = check("X-Disc: 1\r\nX-Hold: 1")
	if r := ReportResult(rep); !rep.Discard || rep.Hold || r.Reason != "headers.discard" || r.Status != policy.StatusFail {
		t.Errorf("discard: %+v", rep)
	}
	rep = check("X-Pass: 1\r\nX-Num: 1")
	if rep.Reject || len(rep.Findings) != 1 {
		t.Errorf("pass: %+v", rep)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := map[string]string{
		"/a(/ OK":                  "x:1: bad pattern",
		"# c\n/abc OK":             "x:2: no closing regexp delimiter",
		"/a/Q OK":                  `x:1: unknown pcre flag 'Q'`,
		"if /a/\n/b/ OK":           "x:1: IF has no matching ENDIF",
		"endif":                    "x:1: ENDIF without matching IF",
		"/a/":                      "x:1: no result",
		"abc OK":                   "x:1: unrecognized request",
		"/(a)/ REJECT $2":          `x:1: out of range replacement index "2"`,
		"/(a)/ REJECT $foo":        `x:1: non-numeric replacement index "foo"`,
		"!/(a)/ REJECT $1":         "x:1: $number substitution in the result of a negated pattern",
		"/a/ OK\nif /b/\nendif x":  "x:3: extra text after ENDIF",
		"/a/ FROBNICATE":           `x:1: unknown action "FROBNICATE"`,
		"/a/ REDIRECT":             "x:1: REDIRECT needs an argument",
		"/a++b/ OK":                "x:1: bad pattern",
		"/(a)(?<=\\1)/U REJECT $1": "x:1: pattern needs the backtracking engine",
	}
	for text, want := range cases {
		m, err := ParseMap("x", strings.NewReader(text), PCRE, time.Second)
		if err == nil {
			err = m.ValidateActions()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", text, err, want)
		}
	}
}

func TestEngines(t *testing.T) {
	m := mustParse(t, "e", "/^a(b)c$/ OK\n/(a)\\1/ OK\n/(?<=x)y/ OK\n")
	want := []string{"re2", "regexp2", "regexp2"}
	i := 0
	for _, r := range m.rules {
		if r.re.Engine() != want[i] {
			t.Errorf("rule %d: engine %s, want %s", r.line, r.re.Engine(), want[i])
		}
		i++
	}
}

// TestDotMatchesCharacters documents the one difference from Postfix's PCRE (which runs
// in byte mode): "." matches a character, not a byte.
func TestDotMatchesCharacters(t *testing.T) {
	m := mustParse(t, "u", "/^.{3}$/ OK\n")
	if _, ok, _ := m.Lookup("äöü"); !ok {
		t.Error("three letters did not match .{3}")
	}
}

func TestBacktrackingTimeout(t *testing.T) {
	m, err := ParseMap("t", strings.NewReader(`/^(a+)+\1$/ REJECT slow`+"\n"), PCRE, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, ok, err := m.Lookup(strings.Repeat("a", 40) + "!")
	if ok || err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("ok=%v err=%v after %v", ok, err, time.Since(start))
	}
}

func TestBodySizeLimit(t *testing.T) {
	m := mustParse(t, "b", "/^needle$/ REJECT found\n")
	body := strings.Repeat("hay\r\n", 20000) + "needle\r\n"
	msg, _ := content.WalkBytes([]byte("Subject: x\r\n\r\n"+body), content.Limits{})
	if rep := (&Tables{Body: m}).Check(msg); rep.Reject {
		t.Error("needle past body_checks_size_limit was found")
	}
	if rep := (&Tables{Body: m, BodySizeLimit: 1 << 20}).Check(msg); !rep.Reject {
		t.Error("needle within a raised limit was not found")
	}
}

// TestPathologicalPatternCostsOneTimeout checks that a pattern that times out is not
// retried on every line of the same message, and that a deadline ends the inspection.
func TestPathologicalPatternCostsOneTimeout(t *testing.T) {
	m, err := ParseMap("slow", strings.NewReader(`/^(a+)+\1$/ REJECT slow`+"\n/^needle$/ REJECT found\n"), PCRE, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat(strings.Repeat("a", 40)+"!\r\n", 200) + "needle\r\n"
	msg, _ := content.WalkBytes([]byte("Subject: x\r\n\r\n"+body), content.Limits{})
	start := time.Now()
	rep := (&Tables{Body: m}).Check(msg)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("200 lines took %v: the timed-out pattern was retried", el)
	}
	if len(rep.Errors) != 1 || !rep.Reject || rep.Decisive.Text != "found" {
		t.Errorf("errors %v, decisive %+v", rep.Errors, rep.Decisive)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	big := strings.Repeat("line\r\n", 1000)
	msg, _ = content.WalkBytes([]byte("Subject: x\r\n\r\n"+big), content.Limits{})
	rep = (&Tables{Body: mustParse(t, "b", "/^never$/ OK\n")}).CheckContext(ctx, msg)
	if !rep.Incomplete {
		t.Error("a cancelled context did not stop the inspection")
	}
	p, err := newPolicy(Config{}, Tables{Body: mustParse(t, "b", "/^never$/ OK\n")})
	if err != nil {
		t.Fatal(err)
	}
	tx := policy.NewTransaction(policy.Conn{})
	tx.Message = policy.NewMessage([]byte("Subject: x\r\n\r\n"+big), time.Now())
	if r := p.CheckData(ctx, tx); r.Status != policy.StatusTempError || r.Reason != "headers.timeout" || r.Err == nil {
		t.Errorf("cancelled check: %s %s %v", r.Status, r.Reason, r.Err)
	}
}
