package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// Three days of traffic through the same adapter serve uses (smtpd's and the queue
// manager's events into the decision log and the Postfix-format log): pflogsumm's
// per-day rows, which it prints only for more than one day, equal the report's, and so
// do its grand totals.
func TestReportPerDayMatchesPflogsumm(t *testing.T) {
	pflogsumm := testenv.Program(t, "pflogsumm")
	dir := t.TempDir()
	cfg := config.Default(dir)
	cfg.Log.PostfixFile = filepath.Join(dir, "maillog")
	cfg.Stats.Path = filepath.Join(dir, "decisions.db")
	d, closeD, err := openDecisions(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)

	// days ago, at some hour; the report and pflogsumm read UTC
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(-3 * 24 * time.Hour)
	seq := 0
	event := func(at time.Time, ip string, stage policy.Stage, d policy.Decision, from string, rcpts []string, subject string, queued bool) *smtpd.DecisionEvent {
		seq++
		tx := policy.NewTransaction(policy.Conn{ID: fmt.Sprintf("c%d", seq), Listener: "mx", IP: netip.MustParseAddr(ip), HELO: "mail.sender.test"})
		tx.Envelope.From = address.Parse(from)
		ev := &smtpd.DecisionEvent{Tx: tx, Decision: d, At: stage, Rcpts: rcpts, Time: at, Reply: "250 2.0.0 OK"}
		if stage == policy.StageRcpt && len(rcpts) == 1 {
			tx.Rcpt = address.Parse(rcpts[0])
		}
		if stage >= policy.StageData {
			raw := fmt.Sprintf("From: <%s>\r\nSubject: %s\r\nMessage-ID: <%d@sender.test>\r\n\r\nbody %d\r\n", from, subject, seq, seq)
			tx.Message = policy.NewMessage([]byte(raw), at)
			ev.MsgID, ev.Size = fmt.Sprintf("c%d.1", seq), int64(len(raw))
		}
		if queued {
			ev.QueueID = fmt.Sprintf("q%04d", seq)
		}
		if d.Terminal() {
			ev.Reply = d.Reply.String()
		}
		return ev
	}
	outcome := func(ev *smtpd.DecisionEvent, rcpt, status, reply string, after time.Duration, removed bool) {
		d.RecordOutcome(delivery.Outcome{QueueID: ev.QueueID, Rcpt: rcpt, From: ev.Tx.Envelope.From.String(), Status: status,
			Reply: reply, Dest: "local", Arrived: ev.Time, Time: ev.Time.Add(after), Removed: removed})
	}
	accept := policy.Decision{Stage: policy.StageData, Verdict: policy.Accept}
	spam := policy.Decision{Stage: policy.StageData, Verdict: policy.Reject, Rule: "spam", Category: "Spam", Reply: policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "spam"}}
	rbl := policy.Decision{Stage: policy.StageConnect, Verdict: policy.Reject, Rule: "zen", Category: "RBL", Reply: policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "listed"}}
	for day := range 3 {
		t0 := base.Add(time.Duration(day)*24*time.Hour + time.Duration(3+day*5)*time.Hour)
		for i := range day + 2 { // 2, 3, 4 delivered messages
			ev := event(t0.Add(time.Duration(i)*time.Minute), "192.0.2.1", policy.StageData, accept, fmt.Sprintf("s%d@sender%d.test", i, day), []string{"bob@example.test", "carol@example.test"}, "hi", true)
			d.RecordDecision(ev)
			outcome(ev, "bob@example.test", "delivered", "250 2.0.0 delivered", time.Second, false)
			if i == 0 {
				outcome(ev, "carol@example.test", "deferred", "451 4.2.0 busy", time.Second, false)
			}
			outcome(ev, "carol@example.test", "delivered", "250 2.0.0 delivered", 2*time.Second, true)
		}
		ev := event(t0.Add(10*time.Minute), "192.0.2.2", policy.StageData, accept, "", []string{"nobody@example.test"}, "dsn", true)
		d.RecordDecision(ev)
		outcome(ev, "nobody@example.test", "bounced", "550 5.1.1 no such user", time.Second, true)
		for range day + 1 { // rejected at RCPT, delayed from connect
			d.RecordDecision(event(t0.Add(20*time.Minute), "198.51.100.7", policy.StageRcpt, rbl, "x@spam.test", []string{"bob@example.test"}, "", false))
		}
		d.RecordDecision(event(t0.Add(30*time.Minute), "198.51.100.8", policy.StageData, spam, "y@spam.test", []string{"bob@example.test", "carol@example.test"}, "SPAM", false))
		if day == 1 {
			q := policy.Decision{Stage: policy.StageData, Verdict: policy.Quarantine, Rule: "hold", Category: "Spam"}
			d.RecordDecision(event(t0.Add(40*time.Minute), "198.51.100.9", policy.StageData, q, "z@spam.test", []string{"bob@example.test"}, "maybe", true))
			dis := policy.Decision{Stage: policy.StageData, Verdict: policy.Discard, Rule: "drop", Category: "drop"}
			d.RecordDecision(event(t0.Add(50*time.Minute), "198.51.100.9", policy.StageData, dis, "z@spam.test", []string{"bob@example.test"}, "drop", false))
		}
	}
	closeD()

	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: cfg.Stats.Path, Retention: -1}, decisionlog.Deps{})
	require.NoError(t, err)
	defer l.Close()
	rep, err := buildReport(context.Background(), l, decisionlog.Filter{}, 10)
	require.NoError(t, err)
	require.Len(t, rep.Days, 3)

	pf, err := exec.Command(pflogsumm, cfg.Log.PostfixFile).CombinedOutput()
	require.NoError(t, err, "%s", pf)
	days := pflogsummRows(string(pf), "Per-Day Traffic Summary")
	require.Len(t, days, 3, "pflogsumm:\n%s", pf)
	for _, row := range rep.Days {
		day, _ := time.Parse("2006-01-02", row.Start)
		require.Equal(t, [5]int64{row.Received, row.Delivered, row.Deferred, row.Bounced, row.Rejected},
			days[day.Format("Jan 2 2006")], "%s; pflogsumm:\n%s", row.Start, pf)
	}
	tt := rep.Totals
	require.Equal(t, map[string]int64{
		"received": tt.Received, "delivered": tt.Delivered, "forwarded": tt.Forwarded, "deferred": tt.Deferred,
		"bounced": tt.Bounced, "rejected": tt.Rejected, "held": tt.Quarantined, "discarded": tt.Discarded,
		"bytes received": tt.BytesReceived, "bytes delivered": tt.BytesDelivered, "senders": tt.Senders,
		"sending hosts/domains": tt.SendingDomains, "recipients": tt.Recipients, "recipient hosts/domains": tt.RecipientDomains,
		"rejected%": tt.RejectedPercent, "discarded%": tt.DiscardedPercent, "deferrals": tt.Deferrals,
	}, pflogsummTotals(t, string(pf)), "pflogsumm:\n%s", pf)
	require.Equal(t, int64(13), tt.Received) // 9 delivered + 3 bounced + 1 held
	require.Equal(t, int64(9), tt.Rejected)  // 6 at RCPT, 3 at DATA
}
