package policy

import (
	"bytes"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/address"
)

// Conn is what is known of the SMTP client connection.
type Conn struct {
	ID        string     // session id, also used in logs and Received headers
	Listener  string     // name of the listener: "mx", "submission", "submissions", "lmtp"
	IP        netip.Addr // client address (after PROXY protocol, if any)
	Port      int
	LocalIP   netip.Addr
	LocalPort int
	// Hostname is the forward-confirmed reverse DNS name of IP (FCrDNS): a PTR name whose
	// A/AAAA records include IP. Empty when there is none.
	Hostname string
	// PTRNames are all names of the PTR lookup, confirmed or not.
	PTRNames []string
	// DNSError is set when the reverse lookup failed temporarily.
	DNSError  bool
	HELO      string // the HELO/EHLO argument, as given
	TLS       bool
	TLSVer    string // "TLS1.3"
	TLSCipher string
	AuthUser  string // authenticated user, "" when not authenticated
	// Trusted is true when the client is in the configured trusted networks.
	Trusted     bool
	ConnectedAt time.Time
	// Rate holds the client's event counts as the SMTP server's rate limiter last saw
	// them (rules: client.rate.*).
	Rate Rates
}

// Rates are a client's event counts in the current window of each rate limit (Postfix's
// anvil: per client address, per time unit; per authenticated user, per day). A count
// whose limit is off stays 0.
type Rates struct {
	Connections    int `expr:"connections"`     // connections from the address
	Messages       int `expr:"messages"`        // MAIL commands
	Recipients     int `expr:"recipients"`      // RCPT commands
	TLSSessions    int `expr:"tls_sessions"`    // new (not resumed) TLS sessions
	Auth           int `expr:"auth"`            // AUTH commands
	UserMessages   int `expr:"user_messages"`   // the authenticated user's messages today
	UserRecipients int `expr:"user_recipients"` // the user's first-time recipients today
}

// Envelope is the SMTP envelope of the current mail transaction.
type Envelope struct {
	From       address.Address
	FromParams map[string]string // MAIL FROM parameters (SIZE, BODY, SMTPUTF8, ...), upper-case keys
	Rcpts      []address.Address // accepted recipients so far
	// FromOwned: the client is authenticated and its user owns From (their own address
	// or alias, or the null sender for an admin), as the SMTP server's sender ownership
	// lookup says (Postfix's smtpd_sender_login_maps). Rules: sender.owned.
	FromOwned bool
}

// Message is the received message. Body holds the whole message (header and body) exactly
// as received, with CRLF line endings; policies read it through Reader or Bytes and never
// modify it.
type Message struct {
	Size       int64
	Body       io.ReaderAt
	Header     textproto.Header // the parsed top-level header (see ParseHeader)
	ReceivedAt time.Time
	// HeaderMalformed: the header block had lines that are no header field (skipped).
	HeaderMalformed bool

	once  sync.Once
	bytes []byte
	err   error
}

// NewMessage wraps a received message held in memory and parses its header leniently
// (ParseHeader).
func NewMessage(raw []byte, receivedAt time.Time) *Message {
	m := &Message{Size: int64(len(raw)), Body: bytes.NewReader(raw), ReceivedAt: receivedAt, bytes: raw}
	m.once.Do(func() {})
	m.Header, _, m.HeaderMalformed = ParseHeader(raw)
	return m
}

// Reader returns a fresh reader over the whole message.
func (m *Message) Reader() io.Reader { return io.NewSectionReader(m.Body, 0, m.Size) }

// Bytes returns the whole message. It reads the body once and shares the slice; callers
// must not modify it.
func (m *Message) Bytes() ([]byte, error) {
	m.once.Do(func() {
		m.bytes = make([]byte, m.Size)
		_, m.err = io.ReadFull(m.Reader(), m.bytes)
	})
	return m.bytes, m.err
}

// Transaction is one SMTP session's state as the policies see it. The SMTP server owns it;
// policies read it and must not modify it. Conn lives for the connection; Envelope, Rcpt
// and Message are reset for each mail transaction.
type Transaction struct {
	Conn     Conn
	Envelope Envelope
	// Rcpt is the recipient being judged at the rcpt stage.
	Rcpt    address.Address
	Message *Message
	// Hostname is our own host name (used by the HELO checks).
	Hostname string

	memo memo
	// What rules added: conn for the connect and helo stages (kept across mail
	// transactions), mail for the rest (cleared by Reset).
	conn, mail accum
}

type accum struct {
	score   float64
	tags    []string
	headers []Header
}

func (tx *Transaction) acc(s Stage) *accum {
	if s <= StageHelo {
		return &tx.conn
	}
	return &tx.mail
}

// Score is the sum of the scores that matching rules added in this transaction.
func (tx *Transaction) Score() float64 { return tx.conn.score + tx.mail.score }

// Tags are the tags that matching rules added in this transaction.
func (tx *Transaction) Tags() []string {
	if len(tx.mail.tags) == 0 {
		return tx.conn.tags
	}
	return append(append([]string(nil), tx.conn.tags...), tx.mail.tags...)
}

// HeadersToAdd returns the headers to prepend to an accepted message: those of the
// policies' results (Received-SPF, Authentication-Results, ...) in stage and name order,
// then those added by rules.
func (tx *Transaction) HeadersToAdd() []Header {
	var out []Header
	for _, r := range tx.memo.ordered() {
		out = append(out, r.Headers...)
	}
	out = append(out, tx.conn.headers...)
	return append(out, tx.mail.headers...)
}

// NewTransaction starts the policy state of a new connection.
func NewTransaction(c Conn) *Transaction {
	if c.ConnectedAt.IsZero() {
		c.ConnectedAt = time.Now()
	}
	return &Transaction{Conn: c}
}

// Reset ends the mail transaction (after DATA, RSET or a new MAIL FROM): the envelope,
// message and the results of the mail, rcpt and data stages are forgotten; the results of
// the connect and helo stages are kept.
func (tx *Transaction) Reset() {
	tx.Envelope = Envelope{}
	tx.Rcpt = address.Address{}
	tx.Message = nil
	tx.memo.reset(StageMail)
	tx.mail = accum{}
}

// ResetHelo forgets the helo-stage results too (a second EHLO, or EHLO after STARTTLS).
func (tx *Transaction) ResetHelo() {
	tx.Reset()
	tx.memo.reset(StageHelo)
}

// EachResult calls f with every policy result memoised in the transaction, in stage,
// instance and recipient order (rcpt is "" outside the rcpt stage): what the decision
// log keeps of each policy.
func (tx *Transaction) EachResult(f func(name string, stage Stage, rcpt string, r Result)) {
	tx.memo.mu.Lock()
	keys := make([]memoKey, 0, len(tx.memo.m))
	for k := range tx.memo.m {
		keys = append(keys, k)
	}
	results := make([]Result, 0, len(keys))
	sortKeys(keys)
	for _, k := range keys {
		results = append(results, tx.memo.m[k])
	}
	tx.memo.mu.Unlock()
	for i, k := range keys {
		f(k.instance, k.stage, k.rcpt, results[i])
	}
}
