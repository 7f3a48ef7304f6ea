package smtpconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a session.
type Options struct {
	// LMTP speaks LMTP (RFC 2033): LHLO and one reply per recipient after the data.
	LMTP bool
	// LocalName is the name sent in EHLO/LHLO. ["localhost"]
	LocalName string
	// TLS, when set, makes an SMTP session try STARTTLS when the server offers it
	// (RFC 3207). ServerName is filled from the host when empty.
	TLS *tls.Config
	// RequireTLS fails the session (temporarily) when STARTTLS is not offered or fails;
	// without it a failed handshake falls back to plaintext on a new connection (the
	// opportunistic "may" level of Postfix).
	RequireTLS bool
	// AuthUser and AuthPassword authenticate with AUTH PLAIN after TLS (RFC 4954, 4616).
	// AUTH is never sent over a connection without TLS.
	AuthUser, AuthPassword string
	// ConnectTimeout bounds the TCP connect. [30s]
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply, the greeting included. [5m, RFC 5321
	// §4.5.3.2]
	CommandTimeout time.Duration
	// DataTimeout bounds sending the message and the reply after the final dot. [10m]
	DataTimeout time.Duration
}

func (o *Options) defaults() {
	if o.LocalName == "" {
		o.LocalName = "localhost"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 10 * time.Minute
	}
}

// Session is one open SMTP or LMTP session, ready for mail transactions. It is not safe
// for concurrent use; the Pool hands it to one user at a time.
type Session struct {
	Key  string // the pool key (destination)
	Host string // the server, for replies and logs
	TLS  bool   // the session runs over TLS

	opts    Options
	c       *smtp.Client
	raw     net.Conn // under TLS, if any
	created time.Time
	used    time.Time
	uses    int
	broken  bool
	data    bool // the current transaction got as far as DATA
}

// OpenError is a failure to set up a session: connect, greeting, hello, STARTTLS or
// AUTH. Result says what to record for the recipients; a relay may try the next host.
type OpenError struct {
	Result Result
}

func (e *OpenError) Error() string { return e.Result.Reply }

// OpenResult returns the result to record for an error from Open.
func OpenResult(host string, err error) Result {
	var oe *OpenError
	if errors.As(err, &oe) {
		return oe.Result
	}
	return FromError("", host, err, "4.4.2")
}
func (e *OpenError) Unwrap() error { return e.Result.Err }

// Open connects to addr on network ("tcp" or "unix"), reads the greeting, says hello and,
// for SMTP, negotiates STARTTLS and AUTH as opts say. host names the server in replies
// and is the TLS server name. Errors are *OpenError.
func Open(ctx context.Context, network, addr, host string, opts Options) (*Session, error) {
	opts.defaults()
	fail := func(enh string, err error) (*Session, error) {
		return nil, &OpenError{Result: FromError("", host, err, enh)}
	}
	s, err := open(ctx, network, addr, host, opts, opts.TLS != nil)
	if err != nil && errors.Is(err, errTLSHandshake) && !opts.RequireTLS {
		// RFC 3207 §4.1 leaves it to the client; like Postfix at level "may", try again
		// without TLS rather than not deliver at all.
		s, err = open(ctx, network, addr, host, opts, false)
	}
	if err != nil {
		var oe *OpenError
		if errors.As(err, &oe) {
			return nil, err
		}
		return fail("4.4.2", err)
	}
	return s, nil
}

var errTLSHandshake = errors.New("TLS handshake failed")

func open(ctx context.Context, network, addr, host string, opts Options, tryTLS bool) (*Session, error) {
	d := net.Dialer{Timeout: opts.ConnectTimeout}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &OpenError{Result: FromError("", host, fmt.Errorf("connect to %s: %w", addr, err), "4.4.1")}
	}
	return setup(ctx, conn, host, opts, tryTLS)
}

// openConn sets up a session on an open connection (for tests).
func openConn(ctx context.Context, conn net.Conn, host string, opts Options) (*Session, error) {
	return setup(ctx, conn, host, opts, opts.TLS != nil)
}

// setup reads the greeting and says hello on conn; it closes conn on failure.
func setup(ctx context.Context, conn net.Conn, host string, opts Options, tryTLS bool) (*Session, error) {
	s := &Session{Host: host, opts: opts, raw: conn, created: time.Now()}
	// A cancelled ctx closes the connection: go-smtp resets deadlines on every command.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	if err := s.deadline(ctx, opts.CommandTimeout); err != nil {
		return nil, err
	}

	var nc net.Conn = conn
	if opts.LMTP {
		s.c = smtp.NewClientLMTP(conn)
	} else {
		// go-smtp has no StartTLS on an open client and says hello as "localhost" inside
		// NewClientStartTLS, so the greeting, EHLO and STARTTLS are done here; go-smtp takes
		// over afterwards, given a greeting line it expects to read first.
		tp := textproto.NewConn(conn)
		if _, _, err := tp.ReadResponse(220); err != nil {
			return nil, &OpenError{Result: FromError("", host, fmt.Errorf("greeting: %w", protoErr(err)), "4.4.2")}
		}
		ext := map[string]bool{}
		id, err := tp.Cmd("EHLO %s", opts.LocalName)
		if err != nil {
			return nil, &OpenError{Result: FromError("", host, err, "4.4.2")}
		}
		tp.StartResponse(id)
		_, msg, err := tp.ReadResponse(250)
		tp.EndResponse(id)
		if err == nil {
			for _, l := range strings.Split(msg, "\n")[1:] {
				f := strings.Fields(l)
				if len(f) > 0 {
					ext[strings.ToUpper(f[0])] = true
				}
			}
		} else if te := (*textproto.Error)(nil); !errors.As(err, &te) || (te.Code != 500 && te.Code != 502) {
			return nil, &OpenError{Result: FromError("", host, fmt.Errorf("EHLO: %w", protoErr(err)), "4.4.2")}
		}
		if tryTLS && ext["STARTTLS"] {
			id, err := tp.Cmd("STARTTLS")
			if err != nil {
				return nil, &OpenError{Result: FromError("", host, err, "4.4.2")}
			}
			tp.StartResponse(id)
			_, _, err = tp.ReadResponse(220)
			tp.EndResponse(id)
			if err != nil && opts.RequireTLS {
				return nil, &OpenError{Result: FromError("", host, fmt.Errorf("STARTTLS: %w", protoErr(err)), "4.7.5")}
			}
			if err == nil {
				cfg := opts.TLS.Clone()
				if cfg.ServerName == "" {
					cfg.ServerName = strings.TrimSuffix(host, ".")
				}
				tc := tls.Client(conn, cfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					return nil, &OpenError{Result: FromError("", host, fmt.Errorf("%w: %w", errTLSHandshake, err), "4.7.5")}
				}
				nc, s.TLS = tc, true
			}
		} else if opts.RequireTLS {
			return nil, &OpenError{Result: Fail("", host, 451, "4.7.4", host+" does not offer STARTTLS, which is required", nil)}
		}
		s.c = smtp.NewClient(&greetConn{Conn: nc, pre: []byte("220 continue\r\n")})
	}
	s.c.CommandTimeout, s.c.SubmissionTimeout = opts.CommandTimeout, opts.DataTimeout
	s.arm(ctx)
	if err := s.c.Hello(opts.LocalName); err != nil {
		what := "LHLO"
		if !opts.LMTP {
			what = "EHLO"
		}
		if s.TLS && !isReply(err) {
			// With TLS 1.3 the server may reject the handshake only when the client first
			// reads (a required client certificate): a TLS failure all the same.
			return nil, &OpenError{Result: FromError("", host, fmt.Errorf("%w: %s after STARTTLS: %w", errTLSHandshake, what, err), "4.7.5")}
		}
		return nil, &OpenError{Result: FromError("", host, fmt.Errorf("%s: %w", what, err), "4.4.2")}
	}
	if opts.AuthUser != "" {
		if !s.TLS {
			return nil, &OpenError{Result: Fail("", host, 451, "4.7.10", "refusing to send AUTH credentials to "+host+" without TLS", nil)}
		}
		if err := s.c.Auth(sasl.NewPlainClient("", opts.AuthUser, opts.AuthPassword)); err != nil {
			// Like Postfix (smtp_sasl_auth_soft_bounce), a rejected login defers: it is a
			// configuration problem that should not bounce mail.
			r := FromError("", host, fmt.Errorf("AUTH: %w", err), "4.7.8")
			r.Status = Temporary
			if r.Code >= 500 {
				r.Code = 451
				r.Reply = "451" + r.Reply[3:]
			}
			return nil, &OpenError{Result: r}
		}
	}
	if !stop() {
		return nil, &OpenError{Result: FromError("", host, ctx.Err(), "4.4.7")}
	}
	ok = true
	conn.SetDeadline(time.Time{})
	return s, nil
}

// protoErr turns a textproto reply error into the *smtp.SMTPError go-smtp would give.
func protoErr(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg, EnhancedCode: smtp.NoEnhancedCode}
	if f := strings.SplitN(te.Msg, " ", 2); len(f) == 2 {
		if p := strings.Split(f[0], "."); len(p) == 3 {
			var ec smtp.EnhancedCode
			good := true
			for i, x := range p {
				n, err := strconv.Atoi(x)
				if err != nil {
					good = false
					break
				}
				ec[i] = n
			}
			if good {
				se.EnhancedCode, se.Message = ec, f[1]
			}
		}
	}
	return se
}

// greetConn returns pre before reading from the connection.
type greetConn struct {
	net.Conn
	pre []byte
}

func (g *greetConn) Read(b []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(b, g.pre)
		g.pre = g.pre[n:]
		return n, nil
	}
	return g.Conn.Read(b)
}

// deadline sets an absolute deadline on the raw connection: d from now, earlier if ctx
// ends earlier.
func (s *Session) deadline(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return &OpenError{Result: FromError("", s.Host, err, "4.4.7")}
	}
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	return s.raw.SetDeadline(t)
}

// arm makes go-smtp's per-command timeouts end no later than ctx's deadline.
func (s *Session) arm(ctx context.Context) {
	ct, dt := s.opts.CommandTimeout, s.opts.DataTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left < time.Millisecond {
			left = time.Millisecond
		}
		ct, dt = min(ct, left), min(dt, left)
	}
	s.c.CommandTimeout, s.c.SubmissionTimeout = ct, dt
}

// Extension reports whether the server announced ext in its EHLO/LHLO reply, and its
// parameter.
func (s *Session) Extension(ext string) (bool, string) { return s.c.Extension(ext) }

// Reused reports whether the session had served a transaction before the last one.
func (s *Session) Reused() bool { return s.uses > 1 }

// Retryable reports whether the last transaction failed on a broken session before the
// message was sent, so that trying again on a new session cannot deliver twice.
func (s *Session) Retryable() bool { return s.broken && !s.data }

// Broken reports whether the session failed and must not be reused.
func (s *Session) Broken() bool { return s.broken }

// Close ends the session with QUIT (bounded by a short deadline) and closes it.
func (s *Session) Close() error {
	if !s.broken {
		s.raw.SetDeadline(time.Now().Add(2 * time.Second))
		s.c.CommandTimeout = 2 * time.Second
		if err := s.c.Quit(); err == nil {
			return nil
		}
	}
	return s.c.Close()
}

// Send runs one mail transaction (RFC 5321 §3.3, RFC 2033 §4.2) and returns one result
// per recipient, in the order of rcpts. msg is the message with CRLF line endings (bare
// LF is converted, dots are stuffed) and size its length in bytes, for SIZE (RFC 1870).
// utf8 asks for SMTPUTF8 when the server offers it (a message with UTF-8 header
// fields); addresses with non-ASCII characters always need it. After Send the session
// is ready for the next transaction unless Broken.
func (s *Session) Send(ctx context.Context, from string, rcpts []string, msg io.Reader, size int64, utf8 bool) []Result {
	return s.SendDSN(ctx, from, rcpts, msg, size, utf8, nil)
}

// DSN holds the RFC 3461 parameters to pass on when relaying: MAIL RET= and ENVID=,
// RCPT NOTIFY= per recipient. They are sent only to a server that announces DSN, and
// dropped when malformed.
type DSN struct {
	Ret    string            // FULL or HDRS
	EnvID  string            // printable ASCII
	Notify map[string]string // by recipient: "NEVER" or a list of SUCCESS, FAILURE, DELAY
}

// SendDSN is Send with DSN parameters (dsn may be nil).
func (s *Session) SendDSN(ctx context.Context, from string, rcpts []string, msg io.Reader, size int64, utf8 bool, dsn *DSN) []Result {
	out := make([]Result, len(rcpts))
	if s.broken {
		for i, r := range rcpts {
			out[i] = Fail(r, s.Host, 451, "4.4.2", "session to "+s.Host+" is no longer usable", nil)
			out[i].BeforeData = true
		}
		return out
	}
	s.used = time.Now()
	s.uses++
	s.data = false
	cancelled := false
	stop := context.AfterFunc(ctx, func() { s.raw.SetDeadline(time.Unix(1, 0)); s.raw.Close() })
	defer func() {
		if !stop() || cancelled {
			s.broken = true
		}
	}()
	s.arm(ctx)

	all := func(r Result) []Result {
		for i, rc := range rcpts {
			out[i] = r
			out[i].Rcpt = rc
		}
		return out
	}
	netFail := func(rcpt string, err error) Result {
		if ctx.Err() != nil {
			cancelled = true
			return FromError(rcpt, s.Host, fmt.Errorf("%w (%w)", ctx.Err(), err), "4.4.7")
		}
		return FromError(rcpt, s.Host, err, "4.4.2")
	}

	// RFC 6531 §3.2: an address with non-ASCII characters needs SMTPUTF8 from the server.
	need := !isASCII(from)
	for _, r := range rcpts {
		need = need || !isASCII(r)
	}
	hasUTF8, _ := s.c.Extension("SMTPUTF8")
	if need && !hasUTF8 {
		return s.mark(all(Fail("", s.Host, 553, "5.6.7", s.Host+" does not support SMTPUTF8, needed for an internationalized address", nil)), nil)
	}
	// RFC 1870 §6: do not send a message larger than the server announced.
	if ok, v := s.c.Extension("SIZE"); ok && size > 0 {
		if max, err := strconv.ParseInt(v, 10, 64); err == nil && max > 0 && size > max {
			return s.mark(all(Fail("", s.Host, 552, "5.3.4", fmt.Sprintf("message size %d exceeds the limit %d of %s", size, max, s.Host), nil)), nil)
		}
	}

	mo := &smtp.MailOptions{Size: size, UTF8: hasUTF8 && (need || utf8)}
	if dsn != nil {
		switch r := strings.ToUpper(dsn.Ret); r {
		case "FULL", "HDRS":
			mo.Return = smtp.DSNReturn(r)
		}
		if printable(dsn.EnvID) && len(dsn.EnvID) <= 100 { // RFC 3461 §4.4
			mo.EnvelopeID = dsn.EnvID
		}
	}
	if err := s.c.Mail(from, mo); err != nil {
		r := netFail("", err)
		if isReply(err) {
			s.reset()
		} else {
			s.broken = true
		}
		return s.mark(all(r), nil)
	}
	// Recipients: each unique address once; duplicates share the result.
	idx := map[string]int{}
	var accepted []string
	done := map[string]Result{}
	for _, r := range rcpts {
		if _, dup := idx[r]; dup {
			continue
		}
		idx[r] = len(idx)
		var ro *smtp.RcptOptions
		if dsn != nil {
			if n := notify(dsn.Notify[r]); n != nil {
				ro = &smtp.RcptOptions{Notify: n}
			}
		}
		if err := s.c.Rcpt(r, ro); err != nil {
			done[r] = netFail(r, err)
			if !isReply(err) {
				s.broken = true
				for _, r2 := range rcpts {
					if _, ok := done[r2]; !ok {
						done[r2] = netFail(r2, err)
					}
				}
				return s.mark(fill(out, rcpts, done), accepted)
			}
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		s.reset()
		return s.mark(fill(out, rcpts, done), accepted)
	}
	w, err := s.c.Data()
	if err != nil {
		for _, r := range accepted {
			done[r] = netFail(r, err)
		}
		if isReply(err) {
			s.reset()
		} else {
			s.broken = true
		}
		return s.mark(fill(out, rcpts, done), accepted)
	}
	s.data = true
	// go-smtp sets no deadline while the data is written.
	if err := s.deadline(ctx, s.opts.DataTimeout); err != nil {
		s.broken = true
	}
	werr, rerr := copyData(w, msg)
	if rerr != nil || werr != nil {
		// Never end the data with the dot after a short read: the server would deliver a
		// truncated message. Drop the connection instead.
		s.broken = true
		s.raw.Close()
		err := werr
		if rerr != nil {
			err = fmt.Errorf("reading the message: %w", rerr)
		}
		for _, r := range accepted {
			done[r] = netFail(r, err)
		}
		return s.mark(fill(out, rcpts, done), accepted)
	}
	if s.opts.LMTP {
		resp, err := w.CloseWithLMTPResponse()
		var le smtp.LMTPDataError
		errors.As(err, &le)
		for _, r := range accepted {
			switch {
			case resp[r] != nil:
				done[r] = OK(r, s.Host, "250 "+resp[r].StatusText)
			case le[r] != nil:
				done[r] = FromReply(r, s.Host, le[r])
			default:
				// No reply for this recipient: the session broke between the per-recipient
				// replies (RFC 2033 §4.2 owes one per accepted RCPT). go-smtp joins the
				// network error with the replies read so far; only the network error is
				// this recipient's, another recipient's 550 must not become its reason.
				s.broken = true
				e := lostReply(err)
				done[r] = netFail(r, fmt.Errorf("connection lost after the data, before the reply for <%s>: %w", r, e))
			}
		}
	} else {
		resp, err := w.CloseWithResponse()
		for _, r := range accepted {
			if err != nil {
				done[r] = netFail(r, err)
			} else {
				done[r] = OK(r, s.Host, "250 "+resp.StatusText)
			}
		}
		if err != nil && !isReply(err) {
			s.broken = true
		}
	}
	s.raw.SetDeadline(time.Time{})
	return s.mark(fill(out, rcpts, done), accepted)
}

// mark sets BeforeData on every result unless the message went out to that recipient
// (it was accepted and the data was sent).
func (s *Session) mark(res []Result, accepted []string) []Result {
	for i := range res {
		res[i].BeforeData = !(s.data && slices.Contains(accepted, res[i].Rcpt))
	}
	return res
}

func fill(out []Result, rcpts []string, done map[string]Result) []Result {
	for i, r := range rcpts {
		out[i] = done[r]
		out[i].Rcpt = r
	}
	return out
}

// reset ends a failed transaction with RSET so that the session stays usable.
func (s *Session) reset() {
	if err := s.c.Reset(); err != nil {
		s.broken = true
	}
}

// Noop checks that the server still answers.
func (s *Session) Noop(ctx context.Context) error {
	s.arm(ctx)
	if err := s.c.Noop(); err != nil {
		s.broken = true
		return err
	}
	return nil
}

// notify parses a NOTIFY value (RFC 3461 §4.1): NEVER alone, or any of SUCCESS,
// FAILURE, DELAY. Anything else gives nil (the parameter is left out).
func notify(v string) []smtp.DSNNotify {
	if v == "" {
		return nil
	}
	var out []smtp.DSNNotify
	seen := map[string]bool{}
	for _, f := range strings.Split(strings.ToUpper(v), ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return nil
		}
		if seen[f] {
			return nil
		}
		seen[f] = true
		out = append(out, smtp.DSNNotify(f))
	}
	if seen["NEVER"] && len(out) > 1 {
		return nil
	}
	return out
}

func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// lostReply returns the error that ended CloseWithLMTPResponse's reading of the
// replies, without the per-recipient replies go-smtp joins to it
// (errors.Join(netErr, LMTPDataError)): errors.As on the joined error would find
// another recipient's *smtp.SMTPError.
func lostReply(err error) error {
	if err == nil {
		return errors.New("no reply")
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if _, isReplies := err.(smtp.LMTPDataError); !isReplies {
			for _, e := range j.Unwrap() {
				var le smtp.LMTPDataError
				if !errors.As(e, &le) && !isReply(e) {
					return e
				}
			}
		}
		return errors.New("no reply")
	}
	return err
}

func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// copyData copies msg to w, telling a read error from a write error.
func copyData(w io.Writer, msg io.Reader) (werr, rerr error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := msg.Read(buf)
		if n > 0 {
			if _, e := w.Write(buf[:n]); e != nil {
				return e, nil
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Probe asks whether the server would accept rcpt (MAIL FROM:<>, RCPT TO, RSET), as
// Postfix's address verification does, and returns the RCPT result. Nothing is sent.
func (s *Session) Probe(ctx context.Context, rcpt string) Result {
	if s.broken {
		return Fail(rcpt, s.Host, 451, "4.4.2", "session to "+s.Host+" is no longer usable", nil)
	}
	s.used = time.Now()
	s.uses++
	s.data = false
	stop := context.AfterFunc(ctx, func() { s.raw.SetDeadline(time.Unix(1, 0)); s.raw.Close() })
	defer func() {
		if !stop() {
			s.broken = true
		}
	}()
	s.arm(ctx)
	if err := s.c.Mail("", nil); err != nil {
		if isReply(err) {
			s.reset()
		} else {
			s.broken = true
		}
		return FromError(rcpt, s.Host, err, "4.4.2")
	}
	var r Result
	if err := s.c.Rcpt(rcpt, nil); err != nil {
		if !isReply(err) {
			s.broken = true
			return FromError(rcpt, s.Host, err, "4.4.2")
		}
		r = FromError(rcpt, s.Host, err, "")
	} else {
		r = OK(rcpt, s.Host, "250 2.1.5 recipient ok")
	}
	s.reset()
	return r
}
