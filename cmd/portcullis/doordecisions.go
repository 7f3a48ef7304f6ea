package main

import (
	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policyd"
)

// Decided records an answer of the Postfix doors (policyd's and milter's
// DecisionRecorder): one record per recipient, one for a refusal before RCPT, under the
// door's listener name ("policyd", "milter"). Postfix writes its own log lines for
// what it was told, so nothing goes to the Postfix-format log.
func (d *decisions) Decided(tx *policy.Transaction, dec policy.Decision, reply string, rcpts []string) {
	if d.log == nil {
		return
	}
	if len(rcpts) == 0 {
		rcpts = []string{""}
	}
	for _, rcpt := range rcpts {
		r := decisionlog.FromTransaction(tx, dec, rcpt)
		r.Reply = reply
		if dec.Stage < policy.StageMail {
			r.Sender = "" // a refusal before MAIL has no envelope
		}
		d.log.Add(r)
	}
}

// doorRecorders returns d as the doors' recorders, or nils when there is no decision
// log (an interface holding a nil pointer would not be nil).
func (d *decisions) doorRecorders() (policyd.DecisionRecorder, milter.DecisionRecorder) {
	if d == nil || d.log == nil {
		return nil, nil
	}
	return d, d
}
