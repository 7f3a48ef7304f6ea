package milter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/portcullis-mail/portcullis/policy"
)

// ClientConfig names a milter that portcullis's own SMTP server consults (rspamd's proxy
// worker in milter mode, OpenDKIM): smtp.milters in the server config.
type ClientConfig struct {
	// Addr is the milter's socket as Postfix writes it: inet:host:port,
	// inet:port@host (Sendmail), unix:/path, or host:port.
	Addr string
	// DefaultAction is what happens when the milter cannot be reached or fails in the
	// middle (Postfix's milter_default_action): tempfail (default: 451 4.7.1, the
	// client retries), accept (go on without this milter for the session) or reject.
	DefaultAction string
	// ConnectTimeout bounds the connection and the negotiation (default 10s, Postfix's
	// milter_connect_timeout is 30s).
	ConnectTimeout time.Duration
	// Timeout bounds each exchange with the milter, the end of message included
	// (default 60s; Postfix: milter_command_timeout 30s, milter_content_timeout 300s).
	Timeout time.Duration
	// MaxMessageSize bounds the message the milter's changes make (default 32MiB, as
	// smtp.max_message_size): a milter that replaces the body or adds headers past it
	// gets DefaultAction, so that it cannot queue what the server would refuse.
	MaxMessageSize int64
	// Hostname is our name, the j macro.
	Hostname string
	Logger   *slog.Logger
}

// Client opens milter sessions for the SMTP server.
type Client struct {
	cfg ClientConfig
	c   *gomilter.Client
	log *slog.Logger
}

// ParseAddr splits a milter address (inet:host:port, inet:port@host, unix:/path or
// host:port) into a network and an address for net.Dial.
func ParseAddr(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"), strings.HasPrefix(addr, "local:"):
		_, p, _ := strings.Cut(addr, ":")
		if p == "" {
			return "", "", fmt.Errorf("milter address %q: no path", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "inet:"), strings.HasPrefix(addr, "inet6:"):
		_, rest, _ := strings.Cut(addr, ":")
		if port, host, ok := strings.Cut(rest, "@"); ok {
			rest = net.JoinHostPort(host, port)
		}
		addr = rest
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("milter address %q: %w", addr, err)
	}
	return "tcp", addr, nil
}

// NewClient checks cfg; it does no I/O.
func NewClient(cfg ClientConfig) (*Client, error) {
	network, address, err := ParseAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	switch cfg.DefaultAction {
	case "":
		cfg.DefaultAction = "tempfail"
	case "tempfail", "accept", "reject":
	default:
		return nil, fmt.Errorf("milter %s: default_action %q: want tempfail, accept or reject", cfg.Addr, cfg.DefaultAction)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := gomilter.NewClient(network, address,
		gomilter.WithDialer(&net.Dialer{Timeout: cfg.ConnectTimeout}),
		gomilter.WithReadTimeout(cfg.Timeout),
		gomilter.WithWriteTimeout(cfg.Timeout),
		// What we apply to the message before it is queued: headers, body, quarantine.
		// Recipient and sender changes are offered too, because milters ask for them
		// at negotiation (rspamd 3.4 asks for SMFIF_ADDRCPT and SMFIF_DELRCPT, and
		// go-milter's client refuses a milter that asks for more than is offered), but
		// they are logged and not applied: the envelope stays the one the rules judged.
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptChangeBody|gomilter.OptQuarantine|
			gomilter.OptAddRcpt|gomilter.OptRemoveRcpt|gomilter.OptChangeFrom),
	)
	return &Client{cfg: cfg, c: c, log: cfg.Logger}, nil
}

// ClientSession is one SMTP session as the milter sees it. Its methods never fail: a
// broken milter gives the decision of DefaultAction.
type ClientSession struct {
	c      *Client
	s      *gomilter.ClientSession
	macros *gomilter.MacroBag
	// done: the milter accepted (or failed with default_action accept) and is asked
	// nothing more; for the transaction only when txnDone.
	done, txnDone bool
	inTxn         bool
}

// Open connects to the milter for one SMTP session and sends the connection's facts.
func (c *Client) Open(ctx context.Context, tx *policy.Transaction) (*ClientSession, policy.Decision) {
	cs := &ClientSession{c: c, macros: gomilter.NewMacroBag()}
	conn := tx.Conn
	cs.macros.Set(gomilter.MacroMTAFQDN, c.cfg.Hostname)
	cs.macros.Set(gomilter.MacroDaemonName, "portcullis")
	cs.macros.Set(gomilter.MacroQueueId, conn.ID)
	if conn.LocalIP.IsValid() {
		cs.macros.Set(gomilter.MacroIfAddr, conn.LocalIP.String())
	}
	name := conn.Hostname
	if name == "" {
		name = "unknown"
	}
	if conn.IP.IsValid() {
		cs.macros.Set(gomilter.MacroClientAddr, conn.IP.String())
		cs.macros.Set("_", fmt.Sprintf("%s [%s]", name, conn.IP))
	}
	cs.macros.Set(gomilter.MacroClientName, name)
	s, err := c.c.Session(cs.macros)
	if err != nil {
		return cs, cs.fail("connect", err)
	}
	cs.s = s
	family, addr := gomilter.FamilyUnknown, ""
	switch {
	case conn.IP.Is4():
		family, addr = gomilter.FamilyInet, conn.IP.String()
	case conn.IP.Is6():
		family, addr = gomilter.FamilyInet6, conn.IP.String()
	}
	host := conn.Hostname
	if host == "" {
		host = "[" + conn.IP.String() + "]"
	}
	act, err := s.Conn(host, family, uint16(conn.Port), addr)
	return cs, cs.decide("connect", act, err, true)
}

// Helo sends HELO and the TLS facts of the session.
func (cs *ClientSession) Helo(ctx context.Context, tx *policy.Transaction) policy.Decision {
	if cs.done {
		return policy.Decision{}
	}
	if tx.Conn.TLS {
		cs.macros.Set(gomilter.MacroTlsVersion, strings.Replace(tx.Conn.TLSVer, "TLS", "TLSv", 1))
		cs.macros.Set(gomilter.MacroCipher, tx.Conn.TLSCipher)
	}
	act, err := cs.s.Helo(tx.Conn.HELO)
	return cs.decide("helo", act, err, true)
}

// Mail starts a transaction with the milter.
func (cs *ClientSession) Mail(ctx context.Context, tx *policy.Transaction) policy.Decision {
	cs.Abort(ctx)
	cs.txnDone = false
	if cs.done {
		return policy.Decision{}
	}
	cs.macros.Set(gomilter.MacroAuthAuthen, tx.Conn.AuthUser)
	cs.macros.Set(gomilter.MacroMailAddr, tx.Envelope.From.String())
	var args []string
	for k, v := range tx.Envelope.FromParams {
		if v == "" {
			args = append(args, k)
		} else {
			args = append(args, k+"="+v)
		}
	}
	cs.inTxn = true
	act, err := cs.s.Mail("<"+tx.Envelope.From.String()+">", strings.Join(args, " "))
	return cs.decide("mail", act, err, false)
}

// Rcpt asks about tx.Rcpt.
func (cs *ClientSession) Rcpt(ctx context.Context, tx *policy.Transaction) policy.Decision {
	if cs.done || cs.txnDone {
		return policy.Decision{}
	}
	cs.macros.Set(gomilter.MacroRcptAddr, tx.Rcpt.String())
	act, err := cs.s.Rcpt("<"+tx.Rcpt.String()+">", "")
	d := cs.decide("rcpt", act, err, false)
	if d.Verdict == policy.Accept {
		d.Verdict = policy.Continue // accepting a recipient is not accepting the message
	}
	return d
}

// Message sends the message (header fields as written, then the body) and returns the
// milter's decision and the message with its changes applied: headers added, inserted,
// changed or deleted, the body replaced.
func (cs *ClientSession) Message(ctx context.Context, tx *policy.Transaction, raw []byte) (policy.Decision, []byte) {
	if cs.done || cs.txnDone {
		return policy.Decision{}, raw
	}
	cs.inTxn = false
	fields, end := splitHeader(raw)
	if act, err := cs.s.DataStart(); err != nil || act.Type != gomilter.ActionContinue {
		return cs.decide("data", act, err, false), raw
	}
	for _, f := range fields {
		if f.name == "" {
			continue // a line that is no field: not the milter's to see
		}
		act, err := cs.s.HeaderField(f.name, f.value(), nil)
		if err != nil || act.Type != gomilter.ActionContinue {
			return cs.decide("header", act, err, false), raw
		}
	}
	if act, err := cs.s.HeaderEnd(); err != nil || act.Type != gomilter.ActionContinue {
		return cs.decide("end of header", act, err, false), raw
	}
	var mods []gomilter.ModifyAction
	var act *gomilter.Action
	var err error
	if end == len(raw) {
		// go-milter v0.10.1's BodyReadFrom sends no chunk for an empty body and then
		// refuses its own End ("in wrong state"): send one empty chunk.
		if act, err = cs.s.BodyChunk(nil); err == nil && act.Type == gomilter.ActionContinue {
			mods, act, err = cs.s.End()
		}
	} else {
		mods, act, err = cs.s.BodyReadFrom(bytes.NewReader(raw[end:]))
	}
	d := cs.decide("end of message", act, err, false)
	if d.Terminal() || d.Verdict == policy.Discard {
		return d, raw
	}
	// An upper bound of the changed message's size: the message, what the changes add.
	size, edits := int64(len(raw)), false
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionAddRcpt, gomilter.ActionDelRcpt, gomilter.ActionChangeFrom:
			cs.c.log.Warn("milter envelope change not applied", "milter", cs.c.cfg.Addr, "id", tx.Conn.ID, "change", m.String())
		case gomilter.ActionReplaceBody:
			size += int64(len(m.Body)) * 2 // bare LFs may become CRLF
			edits = true
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader, gomilter.ActionChangeHeader:
			size += int64(len(m.HeaderName)+len(m.HeaderValue))*2 + 4
			edits = true
		}
	}
	if size > cs.c.cfg.MaxMessageSize {
		return cs.fail("end of message", fmt.Errorf("the milter's changes may make the message %d bytes, over %d", size, cs.c.cfg.MaxMessageSize)), raw
	}
	// Without edits the message stays as it came, byte for byte: rebuilt from its parsed
	// fields, a header line that is not a field would be lost (and the copy costs
	// memory the server's budget does not count).
	out, quarantine := raw, ""
	if edits {
		out, quarantine = apply(fields, raw[end:], mods)
	} else {
		_, quarantine = apply(nil, nil, mods)
	}
	if quarantine != "" && d.Verdict < policy.Quarantine {
		d.Verdict = policy.Quarantine
		d.Rule = "milter " + cs.c.cfg.Addr + ": " + quarantine
	}
	return d, out
}

// Abort ends a transaction the milter has seen (RSET, a rejected message).
func (cs *ClientSession) Abort(ctx context.Context) {
	if cs.s == nil || cs.done || !cs.inTxn {
		return
	}
	cs.inTxn = false
	if err := cs.s.Abort(nil); err != nil {
		cs.fail("abort", err)
	}
}

// Close ends the session.
func (cs *ClientSession) Close() error {
	if cs.s == nil {
		return nil
	}
	return cs.s.Close()
}

// decide turns the milter's answer into a decision. conn: the answer is about the
// connection (an accept ends the milter's part in the session, not only the
// transaction).
func (cs *ClientSession) decide(step string, act *gomilter.Action, err error, conn bool) policy.Decision {
	if err != nil {
		return cs.fail(step, err)
	}
	d := policy.Decision{Rule: "milter " + cs.c.cfg.Addr}
	switch act.Type {
	case gomilter.ActionAccept:
		if conn {
			cs.done = true
		} else {
			cs.txnDone = true
		}
		d.Verdict = policy.Accept
	case gomilter.ActionDiscard:
		d.Verdict = policy.Discard
	case gomilter.ActionReject:
		d.Verdict, d.Reply = policy.Reject, policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Command rejected"}
	case gomilter.ActionTempFail:
		d.Verdict, d.Reply = policy.Tempfail, policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "Service unavailable - try again later"}
	case gomilter.ActionRejectWithCode:
		d.Verdict = policy.Reject
		if act.SMTPCode/100 == 4 {
			d.Verdict = policy.Tempfail
		}
		d.Reply = parseReply(act.SMTPCode, act.SMTPReply)
	default:
		d.Rule = ""
	}
	return d
}

// parseReply reads a milter's SMFIR_REPLYCODE text ("550 5.7.1 text", possibly several
// lines "550-5.7.1 a\r\n550 5.7.1 b"): the last line's enhanced code, the lines' texts
// joined.
func parseReply(code uint16, text string) policy.Reply {
	r := policy.Reply{Code: int(code)}
	var parts []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		l = strings.TrimPrefix(l, strconv.Itoa(int(code)))
		l = strings.TrimLeft(l, "- ")
		if p, err := policy.ParseReply(strconv.Itoa(int(code)) + " " + l); err == nil && l != "" {
			if p.Enhanced != "" {
				r.Enhanced = p.Enhanced
			}
			l = p.Text
		}
		if l != "" {
			parts = append(parts, l)
		}
	}
	if r.Enhanced != "" && r.Enhanced[0] != byte('0'+code/100) {
		r.Enhanced = ""
	}
	r.Text = strings.ReplaceAll(strings.Join(parts, " "), "%%", "%")
	return r
}

// fail applies DefaultAction after an error of the milter; the session asks it nothing
// more.
func (cs *ClientSession) fail(step string, err error) policy.Decision {
	cs.done = true
	if cs.s != nil {
		cs.s.Close()
	}
	cs.c.log.Warn("milter failed", "milter", cs.c.cfg.Addr, "step", step, "default_action", cs.c.cfg.DefaultAction, "err", err.Error())
	d := policy.Decision{Rule: "milter " + cs.c.cfg.Addr + " (" + cs.c.cfg.DefaultAction + ")"}
	switch cs.c.cfg.DefaultAction {
	case "accept":
		d.Rule = ""
	case "reject":
		d.Verdict, d.Reply = policy.Reject, policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "Message rejected: content filter unavailable"}
	default:
		d.Verdict, d.Reply = policy.Tempfail, policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "Content filter unavailable, try again later"}
	}
	return d
}
