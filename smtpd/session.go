package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/policy"
)

// connState is what we know of one connection; it outlives go-smtp's sessions, which are
// recreated after STARTTLS.
type connState struct {
	srv *Server
	l   *listener
	nc  *conn
	ctx context.Context // ends when the connection closes

	mu sync.Mutex // serialises session callbacks (BDAT runs Data in its own goroutine)
	tx *policy.Transaction

	// pending is a rejection decided at connect, helo or mail and not answered yet:
	// with delay_reject it is answered at RCPT, otherwise (a re-EHLO, which go-smtp
	// answers itself) at the next MAIL.
	pending      *policy.Decision
	pendingStage policy.Stage

	inTxn    atomic.Bool // between an accepted MAIL and the end of the transaction
	commands int
	errors   int
	msgSeq   int
	// curMsg and curSize are the id and size of the message being judged (data stage).
	curMsg  string
	curSize int64
	// disconnected tells the ConnectionObserver the connection ended.
	disconnected atomic.Pointer[func()]
	// copies of the counters for the disconnect log line
	commandsN, errorsN, messagesN atomic.Int64

	connectDec policy.Decision // headers, tags and verdict of the connect stage
	heloDec    policy.Decision // and of the helo stage

	txnDec []policy.Decision // mail, rcpt and data decisions of the transaction
	// milters are the chained milters' sessions (Deps.Milters).
	milters []MilterSession
	// rcptArgs are the accepted RCPT arguments as go-smtp saw them, in the order of
	// tx.Envelope.Rcpts (LMTP answers each by this name).
	rcptArgs []string

	tap tap // go-smtp's Debug writer: the bare CR its DATA reader hides
}

type backend struct {
	srv *Server
	l   *listener
}

// NewSession runs at HELO/EHLO (go-smtp creates sessions there, and again after STARTTLS).
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	nc := netConnOf(c.Conn())
	if nc == nil || nc.st == nil || nc.st.tx == nil {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "internal error: unknown connection"}
	}
	st := nc.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if cs, ok := c.TLSConnectionState(); ok && !st.tx.Conn.TLS {
		setTLS(&st.tx.Conn, cs) // after STARTTLS: RFC 3207 §4.2 forgets everything else
		st.tx.Conn.AuthUser = ""
		if !cs.DidResume {
			if r, over := st.srv.limit(st.ctx, ratelimitTLS, &st.tx.Conn, ""); over {
				st.nc.killed.Store(true) // Postfix's 421 closes the session
				st.srv.recordRefusal(st.tx.Conn, policy.StageHelo, "rate_limit", r.String())
				return nil, smtpError(r)
			}
		}
	}
	nc.heloDone.Store(true)
	if err := st.command(); err != nil {
		return nil, err
	}
	if !printableHELO(c.Hostname()) {
		// go-smtp would echo the name in "250 Hello NAME"; a refusal never echoes it.
		st.srv.log.Info("smtp HELO refused: control or 8-bit characters", "id", st.tx.Conn.ID,
			"client_ip", st.tx.Conn.IP.String(), "helo", c.Hostname())
		return nil, st.refuse(policy.StageHelo, replyHeloSyntax, "helo_syntax")
	}
	if err := st.helo(c.Hostname(), true); err != nil {
		return nil, err
	}
	return &session{st: st, c: c}, nil
}

var replyHeloSyntax = policy.Reply{Code: 501, Enhanced: "5.5.2", Text: "Syntax error in the HELO/EHLO argument"}

// printableHELO reports whether a HELO/EHLO/LHLO argument (go-smtp cut it at the first
// space) is printable ASCII: RFC 5321 §4.1.1.1 wants a domain or an address literal,
// and without SMTPUTF8 nothing else belongs there. Anything else (a NUL, a bare CR, an
// escape sequence) would be echoed back by go-smtp and written into logs and headers.
// Other syntax (no dot, an underscore) is for the rules to judge (helo.fqdn).
func printableHELO(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return name != ""
}

// helo runs the helo stage for name. With immediate, a rejection is returned (go-smtp
// answers it to the EHLO); otherwise it is kept for the next MAIL.
func (st *connState) helo(name string, immediate bool) error {
	st.tx.Conn.HELO = name
	st.tx.ResetHelo()
	st.resetTxn()
	st.heloDec = policy.Decision{}
	if st.pending != nil && st.pendingStage >= policy.StageHelo {
		st.pending = nil
	}
	if st.pending != nil {
		return nil // a connect rejection waits for RCPT; judging HELO is moot
	}
	d := st.evaluate(policy.StageHelo)
	d = st.withMilters(policy.StageHelo, d, func(ms MilterSession) policy.Decision { return ms.Helo(st.ctx, st.tx) })
	st.heloDec = d
	if !d.Terminal() {
		return nil
	}
	if *st.srv.cfg.DelayReject || !immediate {
		st.pending, st.pendingStage = &d, policy.StageHelo
		return nil
	}
	st.decided(policy.StageHelo, d, replyOf(d).String(), nil, "")
	return st.fail(policy.StageHelo, replyOf(d))
}

// command counts a command against MaxCommands. A command that arrives after a read
// deadline passed is the partial line go-smtp's reader handed over (see conn): it is
// refused, and the session ends.
func (st *connState) command() error {
	if st.nc.timedOut.Load() {
		st.nc.killed.Store(true)
		return errTimeout
	}
	if st.nc.killed.Load() {
		return errClosing
	}
	st.commands++
	st.commandsN.Store(int64(st.commands))
	if st.commands > st.srv.cfg.MaxCommands {
		st.nc.killed.Store(true)
		st.srv.log.Warn("smtp session closed: too many commands", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String())
		return errTooManyCommands
	}
	return nil
}

// fail counts a rejected command and returns reply as an error for go-smtp. When the
// session has made too many errors it is closed after this reply (with 421 instead).
func (st *connState) fail(stage policy.Stage, r policy.Reply) error {
	st.srv.m.reply(st.l.cfg.Name, stage.String(), r.Code)
	st.errors++
	st.errorsN.Store(int64(st.errors))
	if st.errors > st.srv.cfg.MaxErrors {
		st.nc.killed.Store(true)
		st.srv.log.Warn("smtp session closed: too many errors", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String(), "last_reply", r.String())
		return errTooManyErrors
	}
	return smtpError(r)
}

var (
	errClosing         = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Closing connection"}
	errTimeout         = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: lineTimeoutText}
	errTooManyCommands = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many commands, closing connection"}
	errTooManyErrors   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"}
)

func (st *connState) resetTxn() {
	if st.inTxn.Load() {
		st.abortMilters()
	}
	st.tx.Reset()
	st.curMsg, st.curSize = "", 0
	st.txnDec = st.txnDec[:0]
	st.rcptArgs = st.rcptArgs[:0]
	st.inTxn.Store(false)
	if st.pending != nil && st.pendingStage == policy.StageMail {
		st.pending = nil
	}
}

// evaluate runs one stage through the engine, logs it and records its latency.
func (st *connState) evaluate(stage policy.Stage) policy.Decision {
	start := time.Now()
	d := st.callEngine(stage)
	d.Stage = stage
	st.srv.m.observe(stage.String(), time.Since(start).Seconds())
	var reply string
	if d.Terminal() {
		reply = replyOf(d).String()
	}
	st.logDecision(stage, d, reply, "")
	return d
}

// callEngine runs the engine with a timeout. A panic in it (the admission goroutine has
// no other guard) becomes a temporary failure instead of a crash.
func (st *connState) callEngine(stage policy.Stage) (d policy.Decision) {
	e := st.srv.deps.Engine
	if e == nil {
		return d
	}
	defer func() {
		if p := recover(); p != nil {
			st.srv.log.Error("smtp policy engine panicked", "id", st.tx.Conn.ID, "stage", stage.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = policy.Decision{Verdict: policy.Tempfail, Reply: policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Internal error, try again later"}}
		}
	}()
	ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.PolicyTimeout)
	defer cancel()
	return e.Evaluate(ctx, stage, st.tx)
}

// logDecision writes the one record of a stage decision: transport facts, the rule, the
// verdict, the reply and each policy's result.
func (st *connState) logDecision(stage policy.Stage, d policy.Decision, reply, reason string) {
	lg := st.srv.log
	lvl := slog.LevelInfo
	if !lg.Enabled(st.ctx, lvl) {
		return
	}
	tx := st.tx
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("id", tx.Conn.ID),
		slog.String("listener", tx.Conn.Listener),
		slog.String("stage", stage.String()),
		slog.String("client_ip", tx.Conn.IP.String()),
	)
	if tx.Conn.Hostname != "" {
		attrs = append(attrs, slog.String("client_name", tx.Conn.Hostname))
	}
	if tx.Conn.HELO != "" {
		attrs = append(attrs, slog.String("helo", tx.Conn.HELO))
	}
	if tx.Conn.TLS {
		attrs = append(attrs, slog.String("tls", tx.Conn.TLSVer))
	}
	if tx.Conn.AuthUser != "" {
		attrs = append(attrs, slog.String("auth", tx.Conn.AuthUser))
	}
	if stage >= policy.StageMail && stage <= policy.StageQueued {
		attrs = append(attrs, slog.String("from", tx.Envelope.From.String()))
	}
	if stage == policy.StageRcpt {
		attrs = append(attrs, slog.String("rcpt", tx.Rcpt.String()))
	} else if stage >= policy.StageData && len(tx.Envelope.Rcpts) > 0 {
		rs := make([]string, len(tx.Envelope.Rcpts))
		for i, r := range tx.Envelope.Rcpts {
			rs[i] = r.String()
		}
		attrs = append(attrs, slog.Any("rcpts", rs))
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	attrs = append(attrs, slog.String("verdict", d.Verdict.String()))
	if reply != "" {
		attrs = append(attrs, slog.String("reply", reply))
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if d.Score != 0 {
		attrs = append(attrs, slog.Float64("score", d.Score))
	}
	if len(d.Tags) > 0 {
		attrs = append(attrs, slog.Any("tags", d.Tags))
	}
	if len(d.Results) > 0 {
		rs := make([]any, 0, len(d.Results))
		for name, r := range d.Results {
			g := []any{slog.String("status", string(r.Status))}
			if r.Reason != "" {
				g = append(g, slog.String("reason", r.Reason))
			}
			if r.Err != nil {
				g = append(g, slog.String("err", r.Err.Error()))
			}
			rs = append(rs, slog.Group(name, g...))
		}
		attrs = append(attrs, slog.Group("results", rs...))
	}
	lg.LogAttrs(st.ctx, lvl, "smtp stage", attrs...)
}

// refuse logs and answers a rejection that smtpd itself decided (relay control, bad
// syntax, unknown user, limits), as a decision at stage.
func (st *connState) refuse(stage policy.Stage, r policy.Reply, reason string) error {
	v := policy.Reject
	if r.Code/100 == 4 {
		v = policy.Tempfail
	}
	d := policy.Decision{Stage: stage, Verdict: v, Category: reason}
	st.logDecision(stage, d, r.String(), reason)
	st.decided(stage, d, r.String(), nil, "")
	return st.fail(stage, r)
}

// replyOf returns the reply of a terminal decision (policy.ReplyOf).
func replyOf(d policy.Decision) policy.Reply { return policy.ReplyOf(d) }

func smtpError(r policy.Reply) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: r.Code, Message: r.Text}
	var a, b, c int
	if n, _ := sscanEnhanced(r.Enhanced, &a, &b, &c); n == 3 {
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
	}
	return e
}

func sscanEnhanced(s string, a, b, c *int) (int, error) {
	p := strings.Split(s, ".")
	if len(p) != 3 {
		return 0, errors.New("not an enhanced code")
	}
	out := []*int{a, b, c}
	for i, x := range p {
		n := 0
		if x == "" || len(x) > 3 {
			return i, errors.New("bad enhanced code")
		}
		for _, ch := range x {
			if ch < '0' || ch > '9' {
				return i, errors.New("bad enhanced code")
			}
			n = n*10 + int(ch-'0')
		}
		*out[i] = n
	}
	return 3, nil
}

// session is go-smtp's per-EHLO session.
type session struct {
	st *connState
	c  *smtp.Conn
}

func (s *session) Reset() {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	_ = st.command() // over the limit, the connection closes at the next read
	// go-smtp calls Reset for RSET, after DATA and for a second EHLO; only the last
	// changes the HELO name, and it must be judged again.
	if h := s.c.Hostname(); h != "" && h != st.tx.Conn.HELO {
		if !printableHELO(h) {
			// A second EHLO: go-smtp answers it itself, echoing the name, right after
			// this call. Its reply is dropped and the session ends instead.
			st.srv.log.Info("smtp HELO refused: control or 8-bit characters; closing", "id", st.tx.Conn.ID,
				"client_ip", st.tx.Conn.IP.String(), "helo", h)
			_ = st.refuse(policy.StageHelo, replyHeloSyntax, "helo_syntax")
			st.nc.mute.Store(true)
			st.nc.killed.Store(true)
			return
		}
		_ = st.helo(h, false)
		return
	}
	st.resetTxn()
}

func (s *session) Logout() error { return nil }

func (s *session) AuthMechanisms() []string {
	if s.st.l.cfg.Mode == ModeMX || s.st.l.cfg.Mode == ModeLMTP || s.st.srv.deps.Auth == nil {
		return nil
	}
	if _, ok := s.c.TLSConnectionState(); !ok {
		return nil // AUTH only after TLS (go-smtp checks it too)
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.AuthMechanisms() == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	s.st.mu.Lock()
	err := s.st.command()
	authed := s.st.tx.Conn.AuthUser != ""
	s.st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if authed {
		return nil, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Already authenticated"}
	}
	if err := s.st.limitCommand(policy.StageHelo, ratelimitAuth, ""); err != nil {
		return nil, err
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return saslSyntax{s.st, sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return s.authFailed(user, errors.New("authorization identity differs from user"))
			}
			return s.authenticate(user, pass)
		})}, nil
	case sasl.Login:
		return saslSyntax{s.st, &loginServer{authenticate: s.authenticate}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

var replyAuthSyntax = policy.Reply{Code: 501, Enhanced: "5.5.2", Text: "Malformed AUTH response"}

// saslSyntax answers a malformed SASL response (PLAIN without its two NULs, a response
// after the last step) with 501 5.5.2, the client's syntax error (RFC 4954 §4), instead
// of go-smtp's "454 4.7.0 <error text>", a temporary failure of the server. Replies
// already decided (235, 535, 454 from the authenticator) pass unchanged.
type saslSyntax struct {
	st *connState
	sasl.Server
}

func (g saslSyntax) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := g.Server.Next(response)
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		return challenge, done, err
	}
	g.st.mu.Lock()
	defer g.st.mu.Unlock()
	return nil, true, g.st.refuse(policy.StageHelo, replyAuthSyntax, "auth_syntax")
}

func (s *session) authenticate(user, pass string) error {
	st := s.st
	ctx, cancel := context.WithTimeout(st.ctx, 30*time.Second)
	defer cancel()
	canon, err := st.srv.deps.Auth.Authenticate(ctx, user, pass, st.tx.Conn.IP)
	if err != nil {
		return s.authFailed(user, err)
	}
	st.mu.Lock()
	st.tx.Conn.AuthUser = canon
	// A client rejected at connect or helo may still submit once authenticated: judge
	// those stages again now that the rules can see client.authenticated.
	if st.pending != nil && st.pendingStage <= policy.StageHelo {
		st.pending = nil
		if d := st.evaluate(policy.StageConnect); d.Terminal() {
			st.pending, st.pendingStage = &d, policy.StageConnect
		} else if st.connectDec = d; st.tx.Conn.HELO != "" {
			if d := st.evaluate(policy.StageHelo); d.Terminal() {
				st.pending, st.pendingStage = &d, policy.StageHelo
			} else {
				st.heloDec = d
			}
		}
	}
	st.mu.Unlock()
	st.srv.log.Info("smtp auth", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String(), "user", canon)
	return nil
}

func (s *session) authFailed(user string, err error) error {
	st := s.st
	st.srv.log.Info("smtp auth failed", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String(), "user", user, "err", err)
	r := policy.Reply{Code: 535, Enhanced: "5.7.8", Text: "Authentication credentials invalid"}
	switch {
	case isTemporary(err):
		r = policy.Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure, try again later"}
	case errors.Is(err, context.DeadlineExceeded):
		r = policy.Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure"}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.fail(policy.StageHelo, r)
}

// isTemporary reports whether err (or one it wraps) says it is temporary, as the auth
// package's ErrThrottled and ErrUnavailable do.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
