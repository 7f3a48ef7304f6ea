package smtpd

import (
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// DecisionRecorder receives every answer that ends a recipient, a message or a
// connection, for the decision log (decisionlog.Log through an adapter in
// cmd/portcullis). RecordDecision runs on the SMTP path: it must copy what it needs from
// the event (the transaction is only valid during the call) and return at once, never
// waiting on a disk or a network.
type DecisionRecorder interface {
	RecordDecision(ev *DecisionEvent)
}

// ConnectionObserver is implemented by a DecisionRecorder that also wants the start and
// end of each connection (Postfix's "connect from" and "disconnect from" log lines).
type ConnectionObserver interface {
	Connected(c *policy.Conn)
	Disconnected(c *policy.Conn)
}

// DecisionEvent is one answered decision.
type DecisionEvent struct {
	// Tx is the transaction as it stands: connection, envelope, message (from the data
	// stage on) and every policy result. Read-only, and valid during the call only.
	Tx *policy.Transaction
	// Decision is what decided: its Stage (earlier than At when the rejection was
	// delayed to RCPT), verdict, rule and category. A refusal smtpd decided itself (relay
	// control, unknown user, limits) has no rule and its reason as the category.
	Decision policy.Decision
	At       policy.Stage // the stage at which the answer was given
	Reply    string       // the reply sent
	// Rcpts are the recipients the answer is for: the one of a RCPT, every accepted one
	// at the data stage, none for a connection, HELO or MAIL refusal.
	Rcpts   []string
	QueueID string // the spool's id of an accepted message
	MsgID   string // smtpd's id of the message transaction (Received: ... id), "" before DATA
	Size    int64  // the message size, 0 before DATA
	// Delivered: an LMTP listener delivered the message in the transaction; Reply is the
	// delivery's.
	Delivered bool
	Time      time.Time
}

// decided hands one answer to the DecisionRecorder, if any.
func (st *connState) decided(at policy.Stage, d policy.Decision, reply string, rcpts []string, queueID string) {
	rec := st.srv.deps.Decisions
	if rec == nil || st.tx == nil {
		return
	}
	if rcpts == nil {
		rcpts = st.rcptsAt(at)
	}
	ev := DecisionEvent{
		Tx: st.tx, Decision: d, At: at, Reply: reply, Rcpts: rcpts, QueueID: queueID, Time: time.Now(),
	}
	if at >= policy.StageData {
		ev.MsgID, ev.Size = st.curMsg, st.curSize
	}
	rec.RecordDecision(&ev)
}

// rcptsAt returns the recipients an answer at stage concerns.
func (st *connState) rcptsAt(at policy.Stage) []string {
	switch at {
	case policy.StageRcpt:
		if r := st.tx.Rcpt.String(); r != "" {
			return []string{r}
		}
	case policy.StageData, policy.StageQueued:
		out := make([]string, len(st.tx.Envelope.Rcpts))
		for i, a := range st.tx.Envelope.Rcpts {
			out[i] = a.String()
		}
		return out
	}
	return []string{}
}

// verdictDecision returns the decision of the connection or transaction that gave the
// message its final verdict v (quarantine, discard), for its rule and category.
func (st *connState) verdictDecision(v policy.Verdict) policy.Decision {
	for _, ds := range [][]policy.Decision{{st.connectDec, st.heloDec}, st.txnDec} {
		for _, d := range ds {
			if d.Verdict == v {
				return d
			}
		}
	}
	return policy.Decision{Stage: policy.StageData, Verdict: v}
}
