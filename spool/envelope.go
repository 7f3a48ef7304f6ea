package spool

import "time"

// Envelope is what the spool stores beside each message: the SMTP envelope and what the
// receiving server knew of the client, so that delivery, bounces and logs need nothing else.
type Envelope struct {
	ID         string    `json:"id"`          // assigned by Enqueue
	From       string    `json:"from"`        // reverse-path, "" for the null sender
	To         []string  `json:"to"`          // recipients, at least one
	ReceivedAt time.Time `json:"received_at"` // when DATA ended
	Listener   string    `json:"listener,omitempty"`
	ClientIP   string    `json:"client_ip,omitempty"`
	HELO       string    `json:"helo,omitempty"`
	AuthUser   string    `json:"auth_user,omitempty"`
	// Quarantine is set when a rule decided quarantine: delivery puts the message aside.
	Quarantine bool     `json:"quarantine,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	Score      float64  `json:"score,omitempty"`

	// Size is the message size in bytes, set by Enqueue.
	Size int64 `json:"size"`
	// DSN parameters given by the client (RFC 3461), all optional.
	EnvID  string            `json:"env_id,omitempty"` // MAIL ENVID=
	Ret    string            `json:"ret,omitempty"`    // MAIL RET=FULL|HDRS
	Notify map[string]string `json:"notify,omitempty"` // RCPT NOTIFY= by recipient, e.g. "NEVER" or "FAILURE,DELAY"
}
