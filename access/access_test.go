package access

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTable(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func keysOf(ks []key) string {
	var b []string
	for _, k := range ks {
		s := k.s
		if k.partial {
			s += "*"
		}
		b = append(b, s)
	}
	return strings.Join(b, " ")
}

// TestSearchOrder pins the keys of smtpd_check.c's check_mail_access,
// check_domain_access and check_addr_access (a * marks a partial lookup, which pattern
// tables skip).
func TestSearchOrder(t *testing.T) {
	parent := Keys{ParentMatchesSubdomains: true}
	dot := Keys{RecipientDelimiter: "+"}
	for _, c := range []struct{ got, want string }{
		{keysOf(parent.mailKeys("User@Mail.Example.COM")), "User@Mail.Example.COM mail.example.com* example.com* com* User@*"},
		{keysOf(dot.mailKeys("u+x@a.b")), "u+x@a.b u@a.b* a.b* .b* u+x@* u@*"},
		{keysOf(parent.mailKeys("")), "<>"},
		{keysOf(parent.clientKeys("", netip.MustParseAddr("192.0.2.10"))), "unknown 192.0.2.10 192.0.2* 192.0* 192*"},
		{keysOf(parent.clientKeys("mx.example.org.", netip.MustParseAddr("2001:db8::1"))), "mx.example.org example.org* org* 2001:db8::1 2001:db8:* 2001:db8* 2001*"},
		{keysOf(parent.domainKeys(nil, "helo.example", true)), "helo.example example*"},
	} {
		if c.got != c.want {
			t.Errorf("keys %q, want %q", c.got, c.want)
		}
	}
}

func TestActions(t *testing.T) {
	for _, c := range []struct{ value, name, class, reply string }{
		{"REJECT", "unknown[192.0.2.1]", ClassClient, "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied"},
		{"reject go away", "a@b.example", ClassSender, "554 5.7.1 <a@b.example>: Sender address rejected: go away"},
		{"REJECT 5.7.0 not here", "x", ClassHelo, "554 5.7.0 <x>: Helo command rejected: not here"},
		{"DEFER", "x", ClassRecipient, "450 4.7.1 <x>: Recipient address rejected: Access denied"},
		{"DEFER_IF_PERMIT", "x", ClassRecipient, "450 4.7.1 <x>: Recipient address rejected: Service unavailable"},
		{"550 5.1.1 no such user", "x", ClassRecipient, "550 5.1.1 <x>: Recipient address rejected: no such user"},
		{"421 4.7.0 later", "x", ClassClient, "421 4.7.0 <x>: Client host rejected: later"},
		{"553 wrong", "x", ClassSender, "553 5.7.1 <x>: Sender address rejected: wrong"},
		{"OK", "x", ClassClient, ""},
		{"1234567890", "x", ClassClient, ""},
		{"HOLD spam?", "x", ClassClient, ""},
	} {
		a, err := ParseAction(c.value)
		if err != nil {
			t.Fatalf("%q: %v", c.value, err)
		}
		if got := a.Reply(c.name, c.class); got != c.reply {
			t.Errorf("%q: reply %q, want %q", c.value, got, c.reply)
		}
	}
	for _, bad := range []string{"permit_mynetworks, reject", "FILTER nocolon", "PREPEND no header", "250 fine", "REDIRECT"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestTables(t *testing.T) {
	hash := writeTable(t, "access", `# comment
example.com      REJECT no example
Spammer@Example.NET  550 5.7.1 go away
partial@         DEFER
192.0.2          REJECT net
2001:db8:1       DISCARD
dup.example OK
dup.example REJECT
continued.example
  HOLD held
`)
	cidr := writeTable(t, "clients.cidr", `10.0.0.0/8 REJECT ten
if !10.1.0.0/16
10.2.0.0/16 HOLD
endif
! 192.168.0.0/16 DUNNO
[2001:db8::]/32 REJECT v6
`)
	pcre := writeTable(t, "senders.pcre", "/^(.*)@bad\\.example$/ REJECT user $1 is bad\n/^sub\\.example$/ OK\n")
	parent := Keys{ParentMatchesSubdomains: true}
	m, err := Open("texthash:"+hash, MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, want string }{
		{"a@mail.example.com", "REJECT"}, {"spammer@example.net", "550"}, {"partial@other.example", "DEFER"},
		{"x@dup.example", "OK"}, {"y@continued.example", "HOLD"}, {"z@nowhere.example", ""},
	} {
		f, ok, err := m.Sender(parent, c.addr)
		if err != nil || ok != (c.want != "") || f.Action.Name != c.want {
			t.Errorf("sender %s: %+v %v %v, want %s", c.addr, f, ok, err, c.want)
		}
	}
	// Without parent matching, example.com matches only itself.
	if _, ok, _ := m.Sender(Keys{}, "a@mail.example.com"); ok {
		t.Error("example.com matched a subdomain without parent_domain_matches_subdomains")
	}
	for _, c := range []struct{ ip, want string }{{"192.0.2.77", "REJECT"}, {"2001:db8:1::5", "DISCARD"}, {"2001:db8:10::5", ""}, {"198.51.100.1", ""}} {
		f, ok, _ := m.Client(parent, "", netip.MustParseAddr(c.ip))
		if ok != (c.want != "") || f.Action.Name != c.want {
			t.Errorf("client %s: %+v, want %s", c.ip, f, c.want)
		}
	}

	c, err := Open("cidr:"+cidr, MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range []struct{ ip, want string }{
		{"10.9.9.9", "REJECT"}, {"10.2.3.4", "REJECT"}, {"172.16.0.1", "DUNNO"}, {"192.168.1.1", ""}, {"2001:db8::7", "REJECT"},
	} {
		f, ok, _ := c.Client(parent, "mx.example", netip.MustParseAddr(cc.ip))
		if ok != (cc.want != "") || f.Action.Name != cc.want {
			t.Errorf("cidr %s: %+v %v, want %s", cc.ip, f, ok, cc.want)
		}
	}
	p, err := Open("pcre:"+pcre, MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, ok, _ := p.Sender(parent, "joe@bad.example")
	if !ok || f.Reply != "554 5.7.1 <joe@bad.example>: Sender address rejected: user joe is bad" || f.Line != 1 {
		t.Errorf("pcre: %+v", f)
	}
	// A pattern table sees only the full address, never the domain alone.
	if _, ok, _ := p.Sender(parent, "joe@sub.example"); ok {
		t.Error("pcre matched a partial key")
	}
}

func TestBadLines(t *testing.T) {
	for _, c := range []struct{ spec, body, want string }{
		{"texthash:", "a OK\nnovalue\n", ":2: key \"novalue\" without a value"},
		{"texthash:", "a OK\nb permit_mynetworks\n", ":2: key \"b\": unknown action"},
		{"cidr:", "10.0.0.1/8 REJECT\n", ":1: non-null host address bits"},
		{"cidr:", "10.0.0.0/8\n", ":1: no result"},
		{"cidr:", "if 10.0.0.0/8\n", ":1: IF has no matching ENDIF"},
		{"pcre:", "/a/ OK\n/b/ BOGUS x\n", ":2: unknown action"},
		{"texthash:", "  continued OK\n", ":1: continuation line"},
	} {
		p := writeTable(t, "t", c.body)
		_, err := Open(c.spec+p, MapOptions{})
		if err == nil || !strings.Contains(err.Error(), p+c.want) {
			t.Errorf("%s %q: error %v, want %q", c.spec, c.body, err, p+c.want)
		}
	}
	if _, err := Open("mysql:/etc/x", MapOptions{}); err == nil {
		t.Error("mysql: accepted")
	}
}

// TestReloadOnChange: a changed file is re-read on a lookup after check_interval; a file
// that no longer parses keeps the previous contents.
func TestReloadOnChange(t *testing.T) {
	p := writeTable(t, "access", "example.com REJECT\n")
	m, err := Open(p, MapOptions{CheckInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	k := Keys{ParentMatchesSubdomains: true}
	if f, _, _ := m.Sender(k, "a@example.com"); f.Action.Name != "REJECT" {
		t.Fatalf("%+v", f)
	}
	future := time.Now().Add(time.Hour)
	os.WriteFile(p, []byte("example.com OK\n"), 0o644)
	os.Chtimes(p, future, future)
	if f, _, _ := m.Sender(k, "a@example.com"); f.Action.Name != "OK" {
		t.Fatalf("not reloaded: %+v", f)
	}
	os.WriteFile(p, []byte("example.com BOGUS\n"), 0o644)
	os.Chtimes(p, future.Add(time.Hour), future.Add(time.Hour))
	if f, _, _ := m.Sender(k, "a@example.com"); f.Action.Name != "OK" {
		t.Fatalf("a broken file replaced the table: %+v", f)
	}
	if err := m.Reload(); err == nil || !strings.Contains(err.Error(), p+":1:") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
}
