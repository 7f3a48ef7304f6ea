package access_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/access"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

// The oracle's tables: one file of each type, loaded unchanged by Postfix and by us.
var oracleTables = map[string]string{
	"client": `# check_client_access texthash
unknown              DUNNO
blocked.example      REJECT
okhost.example       OK
Sub.Parent.example   DUNNO
parent.example       REJECT 5.7.0 parent domain
192.0.2              REJECT network 192.0.2 is blocked
198.51.100.7         450 4.7.1 come back later
2001:db8:bad         REJECT v6 prefix
`,
	"client.cidr": `# check_client_access cidr
203.0.113.0/25     REJECT 5.7.0 cidr block
if 203.0.113.128/25
203.0.113.200      DEFER
endif
`,
	"reverse.pcre": `/^dyn-.*\.isp\.example$/  REJECT dynamic address
`,
	"helo": `localhost          REJECT you are not localhost
bad-helo.example   DEFER
good.example       OK
`,
	"sender.regexp": `/^postmaster@/     OK
/^[0-9]+@/         REJECT numeric local part
`,
	"sender": `spam.example          REJECT
friend.spam.example   OK
<>                    DUNNO
badguy@               553 5.7.1 no badguys
held@example.org      HOLD
`,
	"rcpt": `abuse@              OK
closed.example      REJECT 5.1.1 mailbox closed
later@remote.example  DEFER_IF_PERMIT
gone@remote.example   550 5.1.1 gone away
`,
}

// oracleCase is one SMTP session: client address and name (XCLIENT), reverse name, HELO,
// sender and recipient.
type oracleCase struct {
	ip, name, rev, helo, from, rcpt string
}

var oracleCases = []oracleCase{
	{ip: "192.0.2.10", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.7", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.8", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.8", name: "blocked.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "192.0.2.10", name: "okhost.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.8", name: "mx.sub.parent.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.8", name: "sub.parent.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.8", name: "x.parent.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "2001:db8:bad::1", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "2001:db8:bad0::1", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "203.0.113.5", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "203.0.113.200", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "203.0.113.201", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", rev: "dyn-1-2-3-4.isp.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", rev: "static.isp.example", helo: "client.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "localhost", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "bad-helo.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "192.0.2.1", helo: "good.example", from: "a@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "postmaster@spam.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "12345@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "x@spam.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "x@a.spam.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "x@friend.spam.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "BadGuy@anywhere.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "held@example.org", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "a@example.org", rcpt: "abuse@closed.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "a@example.org", rcpt: "x@closed.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "a@example.org", rcpt: "later@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "a@example.org", rcpt: "gone@remote.example"},
	{ip: "192.0.2.10", helo: "client.example", from: "a@example.org", rcpt: "abuse@closed.example"},
	{ip: "192.0.2.10", name: "okhost.example", helo: "client.example", from: "x@spam.example", rcpt: "b@remote.example"},
	{ip: "198.51.100.9", helo: "client.example", from: "x@spam.example", rcpt: "later@remote.example"},
}

// The restriction lists, in Postfix's order; the same order becomes rules.
var oracleLists = []struct {
	stage, param, check string
	tables              []string
}{
	{"connect", "smtpd_client_restrictions", "check_client_access", []string{"texthash:client", "cidr:client.cidr"}},
	{"connect", "smtpd_client_restrictions", "check_reverse_client_hostname_access", []string{"pcre:reverse.pcre"}},
	{"helo", "smtpd_helo_restrictions", "check_helo_access", []string{"texthash:helo"}},
	{"mail", "smtpd_sender_restrictions", "check_sender_access", []string{"regexp:sender.regexp", "texthash:sender"}},
	{"rcpt", "smtpd_recipient_restrictions", "check_recipient_access", []string{"texthash:rcpt"}},
}

// TestPostfixOracle runs a table of sessions through a real Postfix smtpd whose
// restriction lists use the tables, and through portcullis's SMTP server whose engine has
// one access policy per table and the rules that mirror the lists (XCLIENT sets the
// client address and names on both sides) (OK accepts the stage, REJECT/DEFER/NNN answer {{name.reply}}, DEFER_IF_PERMIT
// last). Both must give the same reply to RCPT TO, code, enhanced code and text.
func TestPostfixOracle(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for name, body := range oracleTables {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	params := map[string][]string{}
	var order []string
	policies := map[string]policy.Policy{}
	var rules []policy.RuleSpec
	str := func(s string) *string { return &s }
	n := 0
	for _, l := range oracleLists {
		if _, ok := params[l.param]; !ok {
			order = append(order, l.param)
		}
		for _, tb := range l.tables {
			typ, file, _ := strings.Cut(tb, ":")
			spec := typ + ":" + filepath.Join(dir, file)
			params[l.param] = append(params[l.param], l.check+" "+spec)
			var cfg access.Config
			switch l.check {
			case "check_client_access":
				cfg.CheckClientAccess = spec
			case "check_reverse_client_hostname_access":
				cfg.CheckReverseClientHostnameAccess = spec
			case "check_helo_access":
				cfg.CheckHeloAccess = spec
			case "check_sender_access":
				cfg.CheckSenderAccess = spec
			case "check_recipient_access":
				cfg.CheckRecipientAccess = spec
			}
			p, err := access.New(cfg, access.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			n++
			name := fmt.Sprintf("t%d", n)
			policies[name] = p
			rules = append(rules,
				policy.RuleSpec{Name: name + "-ok", Stage: l.stage, If: name + ".ok", Accept: str("")},
				policy.RuleSpec{Name: name + "-reject", Stage: l.stage, If: name + ".reject", Reject: str("{{" + name + ".reply}}")},
				policy.RuleSpec{Name: name + "-defer", Stage: l.stage, If: name + ".defer", Tempfail: str("{{" + name + ".reply}}")})
		}
	}
	for name := range policies {
		if p := policies[name].(*access.Policy); p.Which() == access.CheckRecipient {
			rules = append(rules, policy.RuleSpec{Name: name + "-defer-if-permit", Stage: "rcpt", If: name + ".defer_if_permit", Tempfail: str("{{" + name + ".reply}}")})
		}
	}
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Policies: policies, Hostname: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	ours := startPortcullis(t, eng)

	var mainCF strings.Builder
	mainCF.WriteString("smtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_delay_reject = yes\nsmtpd_relay_restrictions = reject_unauth_destination\nrelay_domains = remote.example, closed.example\nmynetworks =\n")
	for _, p := range order[:len(order)-1] {
		fmt.Fprintf(&mainCF, "%s = %s\n", p, strings.Join(params[p], ", "))
	}
	mainCF.WriteString("smtpd_recipient_restrictions = " + strings.Join(params["smtpd_recipient_restrictions"], ", ") + ", permit\n")
	pf := postfixtest.Start(t, postfixtest.Config{MainCF: mainCF.String()})

	for _, c := range oracleCases {
		want := postfixReply(t, pf, c)
		got := sessionReply(t, ours, c, func() string { return "" })
		if got != want {
			t.Errorf("%+v:\n postfix    %s\n portcullis %s", c, want, got)
		}
	}
	if t.Failed() {
		t.Logf("postfix log:\n%s", pf.Log())
	}
}

// startPortcullis runs portcullis's SMTP server on loopback with the oracle's engine,
// XCLIENT allowed from loopback (Postfix's smtpd_authorized_xclient_hosts) and
// delay_reject on (the default, as smtpd_delay_reject = yes), relaying for the same
// domains as Postfix's relay_domains.
func startPortcullis(t *testing.T, eng *policy.Engine) string {
	sp, err := spool.Open(t.TempDir(), spool.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	srv, err := smtpd.New(smtpd.Config{
		Hostname:     "mx.test",
		DataDir:      t.TempDir(),
		Listeners:    []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX, XClientFrom: []string{"127.0.0.0/8"}}},
		LocalDomains: []string{"remote.example", "closed.example"},
	}, smtpd.Deps{Engine: eng, Spool: sp, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return srv.Addr("mx").String()
}

func postfixReply(t *testing.T, pf *postfixtest.Postfix, c oracleCase) string {
	return sessionReply(t, pf.Addr, c, pf.Log)
}

// sessionReply runs one oracle session against the SMTP server at addr: EHLO, XCLIENT
// with the client's address and names, EHLO with its HELO, MAIL and RCPT; it returns the
// first refusal or "250". serverLog is shown when the server misbehaves.
func sessionReply(t *testing.T, addr string, c oracleCase, serverLog func() string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	read := func() string {
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v (after %q)\n%s", addr, err, last, serverLog())
			}
			last = strings.TrimRight(l, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	cmd := func(s string) string {
		fmt.Fprintf(nc, "%s\r\n", s)
		return read()
	}
	read()
	cmd("EHLO oracle.test")
	name, rev := c.name, c.rev
	if name == "" {
		name = "[UNAVAILABLE]"
	}
	if rev == "" {
		rev = "[UNAVAILABLE]"
	}
	if r := cmd(fmt.Sprintf("XCLIENT ADDR=%s NAME=%s REVERSE_NAME=%s", xclientAddr(c.ip), name, rev)); !strings.HasPrefix(r, "220") {
		t.Fatalf("XCLIENT: %s", r)
	}
	if r := cmd("EHLO " + c.helo); !strings.HasPrefix(r, "250") {
		return r
	}
	if r := cmd("MAIL FROM:<" + c.from + ">"); !strings.HasPrefix(r, "250") {
		return r
	}
	r := cmd("RCPT TO:<" + c.rcpt + ">")
	cmd("QUIT")
	if strings.HasPrefix(r, "250") {
		return "250"
	}
	return r
}

func xclientAddr(ip string) string {
	if strings.Contains(ip, ":") {
		return "IPV6:" + ip
	}
	return ip
}
