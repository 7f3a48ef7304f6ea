package main

// The decision log and portcullis report against the real binary (issue 17, items 1, 4
// and 5): mail accepted, rejected at each stage, quarantined, discarded, delivered,
// deferred and bounced shows up in the log with its category, rule and outcome; and
// pflogsumm, run unchanged on the Postfix-format log of the same traffic, agrees with
// portcullis report on the grand totals, the per-hour rows and the rejects.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

const reportRules = `rules:
  - name: block-client
    category: RBL
    stage: connect
    if: client.ip == "127.0.0.9"
    reject: 554 5.7.1 "client {{client.ip}} blocked"
  - name: bad-helo
    category: Header HELO
    stage: helo
    if: helo.name == "bad.helo.test"
    reject: 550 5.7.1 "bad helo"
  - name: sender-block
    category: Sender
    stage: mail
    if: sender.domain == "spammer.test"
    reject: 553 5.7.1 "sender blocked"
  - name: rcpt-block
    stage: rcpt
    if: rcpt.local == "info" && sender.local == "carol"
    reject: 550 5.7.1 "recipient blocked"
  - name: greylist
    category: Greylist
    stage: rcpt
    if: rcpt.local == "postmaster" && sender.local == "carol"
    tempfail: 450 4.7.1 "greylisted, try later"
  - name: spam-subject
    category: Header Subject
    stage: data
    if: msg.subject == "SPAM"
    reject: 554 5.7.9 "spam refused"
  - name: hold-it
    category: Spam
    stage: data
    if: msg.subject == "quarantine me"
    quarantine: true
  - name: drop-it
    stage: data
    if: msg.subject == "discard me"
    discard: true
`

func reportConfig(t *testing.T, dir string, dns *dnstest.Server) string {
	t.Helper()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(reportRules), 0o644))
	aliases := filepath.Join(dir, "aliases")
	require.NoError(t, os.WriteFile(aliases, []byte("info: postmaster\n"), 0o644))
	transport := filepath.Join(dir, "transport")
	require.NoError(t, os.WriteFile(transport, []byte("later@example.test error:4.4.1 mailbox busy, try later\n"+
		"gone@example.test error:5.1.1 mailbox gone\n"), 0o644))
	cfg := fmt.Sprintf(`hostname: mx.example.test
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
rules: %s
http: { addr: "" }
imap: { addr: "" }
pop3: { addr: "" }
managesieve: { addr: "" }
log: { level: info, postfix_file: %s }
dns: { servers: ["%s"], timeout: 2s }
routing: { transport: %s, aliases: %s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
`, filepath.Join(dir, "data"), rules, filepath.Join(dir, "maillog"), dns.Addr(), transport, aliases)
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))
	return path
}

func reportMsg(from, to, subject string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s>\r\n\r\nHello.\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), from)
}

func TestE2EDecisionLogAndReport(t *testing.T) {
	pflogsumm := testenv.Program(t, "pflogsumm")
	dir := t.TempDir()
	cfg := reportConfig(t, dir, dnstest.New(t))
	srv := startServer(t, cfg, "mx")
	defer srv.kill()
	addr := srv.addrs["mx"]

	// send runs one transaction per message on a new connection from src and returns
	// each step's reply code.
	send := func(src, helo, from string, rcpts []string, subject string) []int {
		t.Helper()
		c := e2eDial(t, addr, src, helo)
		defer c.Close()
		var codes []int
		err := c.Mail(from, nil)
		codes = append(codes, smtpCode(err))
		if err != nil {
			return codes
		}
		ok := 0
		for _, r := range rcpts {
			err := c.Rcpt(r, nil)
			codes = append(codes, smtpCode(err))
			if err == nil {
				ok++
			}
		}
		if ok == 0 {
			return codes
		}
		w, err := c.Data()
		require.NoError(t, err)
		_, err = w.Write([]byte(reportMsg(from, rcpts[0], subject)))
		require.NoError(t, err)
		codes = append(codes, smtpCode(w.Close()))
		require.NoError(t, c.Quit())
		return codes
	}
	const pm = "postmaster@example.test"
	// accepted and delivered, from three senders (one the null sender)
	require.Equal(t, []int{250, 250, 250}, send("127.0.0.1", "mail.sender.test", "alice@sender.test", []string{pm}, "hello"))
	require.Equal(t, []int{250, 250, 250}, send("127.0.0.1", "mail.sender.test", "alice@sender.test", []string{pm}, "hello again"))
	require.Equal(t, []int{250, 250, 250}, send("127.0.0.2", "mail.other.test", "", []string{pm}, "a notification"))
	// one recipient delivered, one deferred (transport error:4.4.1), one bounced (error:5.1.1)
	require.Equal(t, []int{250, 250, 250, 250, 250}, send("127.0.0.1", "mail.sender.test", "bob@sender.test",
		[]string{pm, "later@example.test", "gone@example.test"}, "three ways"))
	// rejected at connect (answered at RCPT: delay_reject), HELO, MAIL, RCPT (rule, greylist,
	// unknown user, relay), DATA (one rejection for two recipients)
	require.Equal(t, []int{250, 554}, send("127.0.0.9", "mail.blocked.test", "x@sender.test", []string{pm}, "never"))
	require.Equal(t, []int{250, 550}, send("127.0.0.1", "bad.helo.test", "x@sender.test", []string{pm}, "never"))
	require.Equal(t, []int{250, 553}, send("127.0.0.1", "mail.sender.test", "x@spammer.test", []string{pm}, "never"))
	require.Equal(t, []int{250, 550, 450, 550, 554}, send("127.0.0.1", "mail.sender.test", "carol@sender.test",
		[]string{"info@example.test", pm, "nobody@example.test", "someone@elsewhere.test"}, "never"))
	require.Equal(t, []int{250, 250, 250, 554}, send("127.0.0.1", "mail.sender.test", "dave@sender.test",
		[]string{pm, "info@example.test"}, "SPAM"))
	// quarantined, discarded
	require.Equal(t, []int{250, 250, 250}, send("127.0.0.1", "mail.sender.test", "erin@sender.test", []string{pm}, "quarantine me"))
	require.Equal(t, []int{250, 250, 250}, send("127.0.0.1", "mail.sender.test", "erin@sender.test", []string{pm}, "discard me"))

	// The decision log, read beside the running server.
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(dir, "data", "decisions.db"), Retention: -1}, decisionlog.Deps{})
	require.NoError(t, err)
	defer l.Close()
	all := func() []decisionlog.Record {
		var out []decisionlog.Record
		f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Sort: decisionlog.SortOldest, Limit: 1000}
		page, _, err := l.Query(context.Background(), f)
		require.NoError(t, err)
		return append(out, page...)
	}
	find := func(recs []decisionlog.Record, pred func(r decisionlog.Record) bool) decisionlog.Record {
		for _, r := range recs {
			if pred(r) {
				return r
			}
		}
		return decisionlog.Record{}
	}
	// every outcome is in: 6 delivered (4 messages to postmaster, the quarantined one is
	// held), the bounce and the deferral
	requireEventually(t, func() bool {
		n := 0
		for _, r := range all() {
			if r.Outcome != "" {
				n++
			}
		}
		return n == 6
	})
	recs := all()
	bySubject := func(s, rcpt string) decisionlog.Record {
		return find(recs, func(r decisionlog.Record) bool { return r.Subject == s && r.Recipient == rcpt })
	}
	r := bySubject("hello", pm)
	require.Equal(t, "accept", r.Verdict)
	require.Equal(t, "delivered", r.Outcome)
	require.Equal(t, "local", r.Relay)
	require.NotEmpty(t, r.QueueID)
	require.Equal(t, "alice@sender.test", r.Sender)
	r = bySubject("three ways", "later@example.test")
	require.Equal(t, "deferred", r.Outcome)
	require.Equal(t, 1, r.Deferrals)
	require.Contains(t, r.OutcomeReason, "4.4.1 mailbox busy")
	r = bySubject("three ways", "gone@example.test")
	require.Equal(t, "bounced", r.Outcome)
	require.Equal(t, "5.1.1", r.DSN)
	for _, rc := range []string{pm, "info@example.test"} {
		r = bySubject("SPAM", rc)
		require.Equal(t, []string{"reject", "data", "spam-subject", "Header Subject", "554 5.7.9 spam refused"},
			[]string{r.Verdict, r.Stage, r.Rule, r.Category, r.Reply}, "%+v", r)
		require.NotEmpty(t, r.Txn)
	}
	r = bySubject("quarantine me", pm)
	require.Equal(t, []string{"quarantine", "hold-it", "Spam"}, []string{r.Verdict, r.Rule, r.Category})
	r = bySubject("discard me", pm)
	require.Equal(t, []string{"discard", "drop-it", "drop-it"}, []string{r.Verdict, r.Rule, r.Category})
	byRcpt := func(rcpt string) decisionlog.Record {
		return find(recs, func(r decisionlog.Record) bool { return r.Recipient == rcpt && r.Sender == "carol@sender.test" })
	}
	for _, c := range []struct{ rcpt, verdict, stage, rule, category string }{
		{"info@example.test", "reject", "rcpt", "rcpt-block", "rcpt-block"},
		{pm, "tempfail", "rcpt", "greylist", "Greylist"},
		{"nobody@example.test", "reject", "rcpt", "", "unknown_user"},
		{"someone@elsewhere.test", "reject", "rcpt", "", "relay"},
	} {
		r := byRcpt(c.rcpt)
		require.Equal(t, []string{c.verdict, c.stage, c.rule, c.category}, []string{r.Verdict, r.Stage, r.Rule, r.Category}, "%+v", r)
	}
	r = find(recs, func(r decisionlog.Record) bool { return r.Rule == "block-client" })
	require.Equal(t, []string{"connect", "RBL", pm, "127.0.0.9"}, []string{r.Stage, r.Category, r.Recipient, r.ClientIP.String()})
	r = find(recs, func(r decisionlog.Record) bool { return r.Rule == "bad-helo" })
	require.Equal(t, []string{"helo", "Header HELO", "bad.helo.test"}, []string{r.Stage, r.Category, r.HELO})
	r = find(recs, func(r decisionlog.Record) bool { return r.Rule == "sender-block" })
	require.Equal(t, []string{"mail", "Sender", "x@spammer.test"}, []string{r.Stage, r.Category, r.Sender})

	// portcullis report and pflogsumm on the Postfix-format log.
	out, err := run(t, "report", "--json", "--config", cfg)
	require.NoError(t, err, out)
	var rep Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	tt := rep.Totals
	// what the traffic above is, counted as pflogsumm counts
	require.Equal(t, Totals{Received: 5, Delivered: 4, Deferred: 1, Deferrals: 1, Bounced: 1, Rejected: 8,
		RejectedPercent: 61, Quarantined: 1, Discarded: 1, DiscardedPercent: 7,
		BytesReceived: tt.BytesReceived, BytesDelivered: tt.BytesDelivered,
		Senders: 3, SendingDomains: 2, Recipients: 1, RecipientDomains: 1}, tt)

	pf, err := exec.Command(pflogsumm, filepath.Join(dir, "maillog")).CombinedOutput()
	require.NoError(t, err, "%s", pf)
	got := pflogsummTotals(t, string(pf))
	want := map[string]int64{
		"received": tt.Received, "delivered": tt.Delivered, "forwarded": tt.Forwarded, "deferred": tt.Deferred,
		"bounced": tt.Bounced, "rejected": tt.Rejected, "held": tt.Quarantined, "discarded": tt.Discarded,
		"bytes received": tt.BytesReceived, "bytes delivered": tt.BytesDelivered, "senders": tt.Senders,
		"sending hosts/domains": tt.SendingDomains, "recipients": tt.Recipients, "recipient hosts/domains": tt.RecipientDomains,
		"rejected%": tt.RejectedPercent, "discarded%": tt.DiscardedPercent, "deferrals": tt.Deferrals,
	}
	require.Equal(t, want, got, "pflogsumm:\n%s", pf)
	rows := pflogsummRows(string(pf), "Per-Hour Traffic Summary")
	for h, row := range rep.Hours {
		want := [5]int64{row.Received, row.Delivered, row.Deferred, row.Bounced, row.Rejected}
		require.Equal(t, want, rows[fmt.Sprintf("%02d00-%02d00", h, h+1)], "hour %d; pflogsumm:\n%s", h, pf)
	}
	if days := pflogsummRows(string(pf), "Per-Day Traffic Summary"); len(days) > 0 { // printed for more than one day
		for _, d := range rep.Days {
			day, _ := time.Parse("2006-01-02", d.Start)
			require.Equal(t, [5]int64{d.Received, d.Delivered, d.Deferred, d.Bounced, d.Rejected}, days[day.Format("Jan 2 2006")])
		}
	}
	// the text report has the same totals
	out, err = run(t, "report", "--config", cfg)
	require.NoError(t, err, out)
	require.Contains(t, out, fmt.Sprintf(" %7d  rejected (%d%%)", tt.Rejected, tt.RejectedPercent))
	require.Contains(t, out, "Rejects by category")
	t.Logf("pflogsumm:\n%s\nportcullis report:\n%s", pf, out)
}

var pfTotalRe = regexp.MustCompile(`(?m)^\s+(\d+)([ km])\s+(received|delivered|forwarded|deferred|bounced|rejected|held|discarded|bytes received|bytes delivered|senders|sending hosts/domains|recipients|recipient hosts/domains)(?: \((\d+)%\)|\s+\((\d+)\s+deferrals\))?\s*$`)

// pflogsummTotals reads pflogsumm's Grand Totals.
func pflogsummTotals(t *testing.T, out string) map[string]int64 {
	t.Helper()
	end := strings.Index(out, "Per-")
	if end < 0 {
		end = len(out)
	}
	got := map[string]int64{}
	for _, m := range pfTotalRe.FindAllStringSubmatch(out[:end], -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		require.Equal(t, " ", m[2], "a count in units: %s", m[0])
		got[m[3]] = n
		if m[4] != "" {
			p, _ := strconv.ParseInt(m[4], 10, 64)
			got[m[3]+"%"] = p
		}
		if m[5] != "" {
			p, _ := strconv.ParseInt(m[5], 10, 64)
			got["deferrals"] = p
		}
	}
	if _, ok := got["deferrals"]; !ok {
		got["deferrals"] = 0
	}
	return got
}

// pflogsummRows reads the rows of a traffic summary section: label -> the five counts.
func pflogsummRows(out, section string) map[string][5]int64 {
	i := strings.Index(out, section)
	if i < 0 {
		return nil
	}
	rows := map[string][5]int64{}
	lines := strings.Split(out[i:], "\n")
	for _, line := range lines[4:] {
		f := strings.Fields(line)
		if len(f) < 6 {
			break
		}
		label := strings.Join(f[:len(f)-5], " ")
		var v [5]int64
		for j, s := range f[len(f)-5:] {
			v[j], _ = strconv.ParseInt(s, 10, 64)
		}
		rows[label] = v
	}
	return rows
}
