package smtpd

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// MilterConfig names a milter the server consults after its own rules (smtp.milters):
// rspamd's proxy worker in milter mode, OpenDKIM. cmd/portcullis builds the clients
// (package milter) from it and hands them over as Deps.Milters.
type MilterConfig struct {
	// Addr is the milter's socket as Postfix writes it: inet:host:port, inet:port@host,
	// unix:/path.
	Addr string `yaml:"addr"`
	// DefaultAction is what happens when the milter cannot be reached, times out or
	// breaks the protocol (Postfix's milter_default_action): tempfail (default: 451
	// 4.7.1, the client retries), accept (go on without it for the session) or reject.
	DefaultAction string `yaml:"default_action"`
	// ConnectTimeout bounds connecting and negotiating (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds each exchange, the end of message included (default 60s).
	Timeout time.Duration `yaml:"timeout"`
}

// Milter opens a chained milter's view of one SMTP session (after the connect stage),
// with its decision about the connection. *milter.Client's Open does it.
type Milter func(ctx context.Context, tx *policy.Transaction) (MilterSession, policy.Decision)

// MilterSession is one SMTP session as a chained milter sees it. Each method returns
// the milter's decision (a broken milter gives the decision of its default action);
// Message also returns the message with the milter's changes (headers, body), which is
// what is queued.
type MilterSession interface {
	Helo(ctx context.Context, tx *policy.Transaction) policy.Decision
	Mail(ctx context.Context, tx *policy.Transaction) policy.Decision
	Rcpt(ctx context.Context, tx *policy.Transaction) policy.Decision
	Message(ctx context.Context, tx *policy.Transaction, raw []byte) (policy.Decision, []byte)
	Abort(ctx context.Context)
	Close() error
}

func checkMilters(ms []MilterConfig) error {
	for _, m := range ms {
		if m.Addr == "" {
			return fmt.Errorf("milters: an entry without addr")
		}
		switch m.DefaultAction {
		case "", "tempfail", "accept", "reject":
		default:
			return fmt.Errorf("milters: %s: default_action %q: want tempfail, accept or reject", m.Addr, m.DefaultAction)
		}
	}
	return nil
}

// openMilters starts the session's milters after the connect stage passed (not on LMTP
// listeners: final delivery was judged by the front-end). The first refusal wins.
func (st *connState) openMilters() policy.Decision {
	if st.l.cfg.Mode == ModeLMTP {
		return policy.Decision{}
	}
	var out policy.Decision
	for _, open := range st.srv.deps.Milters {
		ms, d := open(st.ctx, st.tx)
		st.milters = append(st.milters, ms)
		if d.Terminal() {
			return st.milterDecision(policy.StageConnect, d)
		}
	}
	return out
}

// withMilters asks the milters at stage once the rules did not refuse: the first
// refusal of a milter is the decision; a discard or quarantine of one is kept in d.
func (st *connState) withMilters(stage policy.Stage, d policy.Decision, ask func(MilterSession) policy.Decision) policy.Decision {
	if d.Terminal() {
		return d
	}
	for _, ms := range st.milters {
		md := ask(ms)
		if md.Terminal() {
			return st.milterDecision(stage, md)
		}
		if md.Verdict == policy.Discard || md.Verdict == policy.Quarantine && d.Verdict != policy.Discard {
			d.Verdict, d.Rule = md.Verdict, md.Rule
		}
	}
	return d
}

// milterDecision logs a milter's refusal as a decision of stage.
func (st *connState) milterDecision(stage policy.Stage, d policy.Decision) policy.Decision {
	d.Stage = stage
	st.logDecision(stage, d, replyOf(d).String(), "milter")
	return d
}

func (st *connState) abortMilters() {
	for _, ms := range st.milters {
		ms.Abort(st.ctx)
	}
}

func (st *connState) closeMilters() {
	for _, ms := range st.milters {
		ms.Close()
	}
}

// milterMessage gives the message to the milters in turn, each seeing what the one
// before made of it; the first refusal wins.
func (st *connState) milterMessage(d policy.Decision, raw []byte) (policy.Decision, []byte) {
	for _, ms := range st.milters {
		md, out := ms.Message(st.ctx, st.tx, raw)
		if md.Terminal() {
			return st.milterDecision(policy.StageData, md), raw
		}
		if md.Verdict == policy.Discard || md.Verdict == policy.Quarantine && d.Verdict != policy.Discard {
			d.Verdict, d.Rule = md.Verdict, md.Rule
		}
		raw = out
	}
	return d, raw
}
