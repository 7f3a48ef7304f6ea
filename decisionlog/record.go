package decisionlog

import (
	"net/netip"
	"time"
)

// Record is one decision: one SMTP transaction and recipient, or one connection refused
// before MAIL (Recipient and Sender are empty then).
type Record struct {
	ID   int64     // assigned by the store
	Time time.Time // when the decision was made

	Session    string     // the SMTP session id (smtpd's connection id)
	Txn        string     // the message transaction's id (smtpd's Received: id), shared by its recipients' records; "" before DATA
	Listener   string     // "mx", "submission", "lmtp", ...
	ClientIP   netip.Addr // the client's address
	ClientName string     // its forward-confirmed reverse DNS name, "" when none
	HELO       string
	AuthUser   string // the authenticated user, "" when none

	Sender    string // envelope sender, lower-cased; "" for the null sender
	Recipient string // envelope recipient, lower-cased

	From      string // the From: header field's address
	Subject   string
	MessageID string // Message-ID: without angle brackets
	Size      int64  // message size in bytes (0 before DATA)

	Stage    string // the stage that decided: connect, helo, mail, rcpt, data
	Verdict  string // accept, quarantine, discard, tempfail, reject (policy.Verdict names)
	Reply    string // the SMTP reply sent, "250 2.0.0 OK ..." or "554 5.7.1 ..."
	Rule     string // the rule that decided, "" when none did
	Category string // the rule's category (its name unless the rule says otherwise)
	Policies []PolicyResult
	Score    float64 // the transaction's total score
	Tags     []string
	QueueID  string // the spool's id for accepted mail

	// Outcome is what became of the message for this recipient, set later (SetOutcome).
	Outcome       string // "" (not yet known) or one of the Outcome constants
	OutcomeReason string // the deferral or bounce reason, the remote reply
	OutcomeTime   time.Time
	Relay         string // the destination: "local", "smtp:example.org", "lmtp:127.0.0.1:24" (the queue's Dest); "" when unrouted
	DSN           string // the enhanced status code of the outcome, "2.0.0", "4.4.1", "5.1.1"
	Deferrals     int    // how many delivery attempts were deferred, whatever the outcome now
}

// PolicyResult is one policy instance's result in a transaction.
type PolicyResult struct {
	Name   string  `json:"name"`
	Stage  string  `json:"stage,omitempty"`
	Status string  `json:"status"`
	Reason string  `json:"reason,omitempty"`
	Score  float64 `json:"score,omitempty"`
}

// Verdicts as stored in Record.Verdict (the names of policy.Verdict).
const (
	VerdictAccept     = "accept"
	VerdictQuarantine = "quarantine"
	VerdictDiscard    = "discard"
	VerdictTempfail   = "tempfail"
	VerdictReject     = "reject"
)

// Outcomes of an accepted message for one recipient.
const (
	OutcomeDelivered   = "delivered"
	OutcomeDeferred    = "deferred" // a temporary failure; a later outcome replaces it
	OutcomeBounced     = "bounced"
	OutcomeDiscarded   = "discarded"
	OutcomeQuarantined = "quarantined"
	OutcomeReleased    = "released"
	OutcomeDeleted     = "deleted"
)

// Outcome is the delivery result of one recipient of one queued message, joined to its
// Record by QueueID and Recipient.
type Outcome struct {
	QueueID   string
	Recipient string
	Time      time.Time
	Outcome   string // an Outcome constant
	Reason    string
	Relay     string
	DSN       string
}

// Blocked reports whether the record is a refusal: reject, tempfail, discard or
// quarantine.
func (r Record) Blocked() bool {
	switch r.Verdict {
	case VerdictReject, VerdictTempfail, VerdictDiscard, VerdictQuarantine:
		return true
	}
	return false
}
