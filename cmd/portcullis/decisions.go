package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/decisionlog/postfixlog"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// decisions joins the SMTP server and the queue manager to the decision log and the
// Postfix-format log: it is smtpd's DecisionRecorder (and ConnectionObserver) and the
// manager's OutcomeRecorder, turning their events into records. Neither sink blocks.
type decisions struct {
	log *decisionlog.Log   // nil: stats.disable
	pf  *postfixlog.Writer // nil: no log.postfix_file
}

// openDecisions opens what the config asks for; close closes it after the servers
// stopped.
func openDecisions(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*decisions, func(), error) {
	d := &decisions{}
	if !cfg.Stats.Disable {
		l, err := decisionlog.Open(ctx, cfg.Stats.Config, decisionlog.Deps{Logger: logger, Registerer: reg})
		if err != nil {
			return nil, nil, err
		}
		d.log = l
	}
	if cfg.Log.PostfixFile != "" {
		w, err := postfixlog.Open(cfg.Log.PostfixFile, cfg.Hostname)
		if err != nil {
			if d.log != nil {
				d.log.Close()
			}
			return nil, nil, err
		}
		d.pf = w
	}
	return d, func() {
		if d.log != nil {
			if err := d.log.Close(); err != nil {
				logger.Error("decision log: close", "err", err)
			}
		}
		if d.pf != nil {
			d.pf.Close()
		}
	}, nil
}

// recorder returns d as smtpd's recorder, or nil when there is nothing to record (an
// interface holding a nil pointer would not be nil).
func (d *decisions) recorder() smtpd.DecisionRecorder {
	if d.log == nil && d.pf == nil {
		return nil
	}
	return d
}

// outcomes returns d as the manager's recorder, or nil.
func (d *decisions) outcomes() delivery.OutcomeRecorder {
	if d.log == nil && d.pf == nil {
		return nil
	}
	return d
}

// RecordDecision makes one record per recipient (one for a refusal before RCPT).
func (d *decisions) RecordDecision(ev *smtpd.DecisionEvent) {
	rcpts := ev.Rcpts
	if len(rcpts) == 0 {
		rcpts = []string{""}
	}
	recs := make([]decisionlog.Record, len(rcpts))
	for i, rcpt := range rcpts {
		r := decisionlog.FromTransaction(ev.Tx, ev.Decision, rcpt)
		r.Time, r.Reply, r.QueueID, r.Txn = ev.Time, ev.Reply, ev.QueueID, ev.MsgID
		if ev.Size > 0 {
			r.Size = ev.Size
		}
		if ev.At < policy.StageMail {
			r.Sender = "" // a refusal before MAIL has no envelope
		}
		if ev.Delivered && ev.Decision.Verdict == policy.Accept {
			// an LMTP listener delivered it in the transaction
			r.Outcome, r.OutcomeTime, r.Relay, r.DSN = decisionlog.OutcomeDelivered, ev.Time, "local", enhanced(ev.Reply)
		}
		recs[i] = r
		if d.log != nil {
			d.log.Add(r)
		}
	}
	if d.pf != nil && !ev.Delivered {
		d.pf.Decision(ev.At.String(), recs)
	}
}

// Connected and Disconnected feed the Postfix log's connect and disconnect lines.
func (d *decisions) Connected(c *policy.Conn) {
	if d.pf != nil {
		d.pf.Connect(time.Now(), c.ID, c.Listener, c.IP, c.Hostname)
	}
}

func (d *decisions) Disconnected(c *policy.Conn) {
	if d.pf != nil {
		d.pf.Disconnect(time.Now(), c.ID, c.Listener, c.IP, c.Hostname)
	}
}

// RecordOutcome joins a delivery result to its record.
func (d *decisions) RecordOutcome(o delivery.Outcome) {
	out := decisionlog.Outcome{
		QueueID: o.QueueID, Recipient: o.Rcpt, Time: o.Time, Outcome: o.Status,
		Reason: o.Reply, Relay: o.Dest, DSN: enhanced(o.Reply),
	}
	if d.log != nil {
		d.log.SetOutcome(out)
	}
	if d.pf != nil {
		d.pf.Outcome(out, o.Arrived, o.Removed)
	}
}

// enhanced returns the enhanced status code of a reply ("550 5.1.1 ..." → "5.1.1").
func enhanced(reply string) string {
	f := strings.Fields(reply)
	if len(f) >= 2 && strings.Count(f[1], ".") == 2 && len(f[1]) >= 5 {
		return f[1]
	}
	return ""
}
