package imapd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
)

// The in-house protocol layer (docs/architecture.md, "The IMAP protocol layer"): a
// connection read with imapd/internal/wire, answered here, served by the session logic
// (session.go, fetch.go, sort.go) through the writer interfaces the session defines.

// Timeouts of a wire connection. Between commands a client that has logged in may stay
// silent for 30 minutes (RFC 9051 §5.4: at least 30); one that has not, 30 s per command
// (the login timeout bounds the whole).
const (
	wireIdleTimeout  = 31 * time.Minute
	wireLoginTimeout = 30 * time.Second
	wireWriteTimeout = 5 * time.Minute
)

type wireState int

const (
	stateNotAuth wireState = iota
	stateAuth
	stateSelected
	stateLogout
)

// wireConn is one connection served by the in-house layer.
type wireConn struct {
	srv  *Server
	cs   *connState
	sess *session

	mu      sync.Mutex // guards nc and enabled (the session reads them from IDLE)
	nc      net.Conn
	enabled imap.CapSet

	wmu sync.Mutex // one response at a time: the IDLE goroutine writes too
	// br and bw are the buffers over the stream (r, and cork for the responses held
	// until the server waits for the client): taken from pools when the connection reads
	// or writes, given back while it waits for the client (connbuf.go), so that an idle
	// connection holds none. br is nil while waiting; bw is nil or empty. With
	// COMPRESS=DEFLATE active (zw) the connection keeps its reader, which the inflater
	// reads through, and its writes go through the compressor into cork.
	br   *bufio.Reader
	bw   *bufio.Writer
	r    prefixReader
	cork corkWriter
	zw   *deflateWriter
	p    *wire.Parser

	state     wireState
	loginCmds int
}

func (c *wireConn) EnabledCaps() imap.CapSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enabled.Copy()
}

func (c *wireConn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// Bye sends an untagged BYE and closes the connection.
func (c *wireConn) Bye(text string) error {
	err := c.write(func(e *enc) error { return e.raw("* ").status("BYE", "", text).crlf() })
	if ferr := c.flushOut(); err == nil {
		err = ferr
	}
	c.NetConn().Close()
	c.state = stateLogout
	return err
}

// write writes one response under the write lock, within the write timeout.
func (c *wireConn) write(f func(e *enc) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	nc := c.NetConn()
	nc.SetWriteDeadline(time.Now().Add(wireWriteTimeout))
	err := f(c.enc())
	c.releaseWriter()
	return err
}

// enc returns the response encoder over the write buffer; called with wmu held.
func (c *wireConn) enc() *enc {
	en := c.EnabledCaps()
	return &enc{w: c.writer(), flush: c.flush, utf8: en.Has(imap.CapIMAP4rev2) || en.Has(imap.CapUTF8Accept)}
}

// flush sends what is buffered; with COMPRESS active through the compressor, which
// ends each write at a byte boundary (a sync flush), so the client can decode the
// response whole (RFC 4978 §4).
func (c *wireConn) flush() error { return c.bw.Flush() }

func (c *wireConn) untagged(f func(e *enc) *enc) error {
	return c.write(func(e *enc) error { return f(e.raw("* ")).crlf() })
}

func (c *wireConn) tagged(tag, typ string, code imap.ResponseCode, text string) error {
	if tag == "" {
		tag = "*"
	}
	return c.write(func(e *enc) error { return e.raw(tag).sp().status(typ, code, text).crlf() })
}

// setStream (re)builds the reader, writer and parser over nc (after STARTTLS too).
func (c *wireConn) setStream(nc net.Conn) {
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
	var r io.Reader = nc
	var w io.Writer = nc
	if d := c.srv.cfg.Debug; d != nil {
		r = io.TeeReader(nc, d)
		w = io.MultiWriter(nc, d)
	}
	// Whatever the old stream had buffered is dropped (after STARTTLS: RFC 9051 §11.1,
	// no command sent in the clear runs under TLS).
	c.dropReader()
	c.wmu.Lock()
	c.flushLocked()
	c.cork.w = w
	c.wmu.Unlock()
	c.r = prefixReader{r: r, flush: c.flushOut}
	c.newParser()
}

// newParser (re)makes the parser, over the current reader (nil while the connection
// waits: waitInput gives it one).
func (c *wireConn) newParser() {
	lim := wire.Limits{MaxMessage: int64(c.srv.store.Config().MaxMessageSize)}
	authed := c.p != nil && c.state != stateNotAuth
	c.p = wire.NewParser(c.br, lim, func(text string) error {
		return c.write(func(e *enc) error { return e.raw("+ ").raw(text).crlf() })
	})
	c.p.SetAuthenticated(authed)
}

// serveWire serves one admitted connection with the in-house layer.
func (s *Server) serveWire(nc net.Conn) {
	c := &wireConn{srv: s, enabled: imap.CapSet{}}
	c.cs = connStateOfNet(nc)
	c.sess = &session{srv: s, conn: c, started: time.Now(), cs: c.cs}
	if c.cs != nil {
		c.cs.mu.Lock()
		c.cs.ctl = c
		c.cs.mu.Unlock()
	}
	c.setStream(nc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.wconns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.wconns, c)
		s.mu.Unlock()
	}()
	defer func() {
		if v := recover(); v != nil {
			s.rlog.Error("imap panic", "err", fmt.Sprint(v))
			// A panic while a response was being written (a FETCH's message writer
			// holds wmu to its end) left wmu locked and the stream mid-literal: no
			// flush (it would wait on wmu for ever, keeping the connection, its
			// goroutine and its session), the connection is closed.
			c.NetConn().Close()
			c.sess.Close()
			return
		}
		c.sess.Close()
		c.flushOut() // the last replies (LOGOUT's)
		c.NetConn().Close()
	}()
	if err := c.write(func(e *enc) error {
		e.raw("* OK [CAPABILITY ").raw(strings.Join(c.caps(), " ")).raw("] IMAP server ready")
		return e.crlf()
	}); err != nil {
		return
	}
	for c.state != stateLogout {
		timeout := wireIdleTimeout
		if c.state == stateNotAuth {
			timeout = wireLoginTimeout
		}
		c.NetConn().SetReadDeadline(time.Now().Add(timeout))
		err := c.waitInput()
		var cmd *wire.Command
		if err == nil {
			cmd, err = c.p.ReadCommand()
		}
		var we *wire.Error
		if errors.As(err, &we) {
			if c.state == stateNotAuth && c.tooManyBeforeLogin() {
				return
			}
			if we.Fatal {
				c.Bye(we.Text)
				return
			}
			typ := "BAD"
			if we.Kind == wire.No {
				typ = "NO"
			}
			if c.state == stateNotAuth && strings.HasPrefix(we.Text, "unknown command") {
				// As imapserver: an unknown command before login ends the connection
				// (a cross-protocol attack sends HTTP or SMTP at the IMAP port).
				c.Bye("Unknown command")
				return
			}
			if c.tagged(cmd.Tag, typ, imap.ResponseCode(we.Code), we.Text) != nil {
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
				s.rlog.Debug("imap connection ended", "err", err)
			}
			return
		}
		if c.state == stateNotAuth && c.tooManyBeforeLogin() {
			return
		}
		if err := c.dispatch(cmd); err != nil {
			s.rlog.Debug("imap connection ended", "err", err)
			return
		}
	}
}

// tooManyBeforeLogin counts a command before the login against MaxLoginCommands.
func (c *wireConn) tooManyBeforeLogin() bool {
	c.loginCmds++
	if max := c.srv.cfg.MaxLoginCommands; max > 0 && c.loginCmds > max {
		c.srv.rlog.Info("imap too many commands before login", "remote", c.sess.remote())
		c.Bye("Too many commands before login")
		return true
	}
	return false
}

// connStateOfNet finds the connection state beneath nc.
func connStateOfNet(nc net.Conn) *connState {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if lc, ok := nc.(*limitedConn); ok {
		return lc.st
	}
	return nil
}

// caps lists the capabilities for the connection's state (RFC 9051 §7.2.2).
func (c *wireConn) caps() []string {
	caps := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID"}
	_, isTLS := c.NetConn().(*tls.Conn)
	if c.state == stateNotAuth {
		caps = append(caps, "LITERAL-")
		if !isTLS && c.srv.cfg.TLSConfig != nil {
			caps = append(caps, "STARTTLS")
		}
		if isTLS || c.srv.cfg.Trusted || c.clientTLS() {
			caps = append(caps, "AUTH=PLAIN")
		} else {
			caps = append(caps, "LOGINDISABLED")
		}
		return caps
	}
	caps = append(caps, "LITERAL+", "UNSELECT", "ENABLE", "IDLE", "UTF8=ACCEPT", "NAMESPACE", "UIDPLUS",
		"ESEARCH", "SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "MOVE", "STATUS=SIZE", "CHILDREN",
		"SPECIAL-USE", "CREATE-SPECIAL-USE", "CONDSTORE", "QRESYNC", "MULTIAPPEND", "CATENATE", "BINARY", "WITHIN", "SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "QUOTA", "QUOTA=RES-STORAGE", "COMPRESS=DEFLATE", fmt.Sprintf("APPENDLIMIT=%d", c.sess.AppendLimit()))
	return caps
}

// reply answers a command's outcome: err as NO/BAD with its code, else OK after the
// updates the command may carry (RFC 9051 §7.5.1: no EXPUNGE after FETCH, STORE, SEARCH;
// nor after SORT and THREAD, "variants of SEARCH" whose answer is sequence numbers too,
// RFC 5256 §3).
func (c *wireConn) reply(cmd *wire.Command, err error, code imap.ResponseCode) error {
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if c.state == stateSelected || c.state == stateAuth {
		allowExpunge := cmd.UID
		switch cmd.Name {
		case "FETCH", "STORE", "SEARCH", "SORT", "THREAD":
		default:
			allowExpunge = true
		}
		if err := c.sess.pollSelected(c.updates(), allowExpunge); err != nil {
			return err
		}
	}
	name := cmd.Name
	if cmd.UID {
		name = "UID " + name
	}
	return c.tagged(cmd.Tag, "OK", code, name+" completed")
}

func (c *wireConn) replyErr(cmd *wire.Command, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		typ := "NO"
		switch ie.Type {
		case imap.StatusResponseTypeBad:
			typ = "BAD"
		case imap.StatusResponseTypeBye:
			return c.Bye(ie.Text)
		}
		return c.tagged(cmd.Tag, typ, ie.Code, ie.Text)
	}
	if errors.Is(err, errAuthFailed) {
		return c.tagged(cmd.Tag, "NO", imap.ResponseCodeAuthenticationFailed, "Authentication failed")
	}
	var ne net.Error
	if c.state == stateLogout || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		// The connection failed (the client went away mid-response): nothing to answer.
		c.srv.rlog.Debug("imap connection ended", "command", cmd.Name, "err", err)
		return err
	}
	c.srv.rlog.Error("imap command", "command", cmd.Name, "err", err)
	return c.tagged(cmd.Tag, "NO", imap.ResponseCodeServerBug, "Internal server error")
}

func (c *wireConn) dispatch(cmd *wire.Command) error {
	switch cmd.Name {
	case "CAPABILITY":
		if err := c.untagged(func(e *enc) *enc { return e.raw("CAPABILITY ").raw(strings.Join(c.caps(), " ")) }); err != nil {
			return err
		}
		return c.reply(cmd, nil, "")
	case "NOOP", "CHECK":
		return c.reply(cmd, nil, "")
	case "LOGOUT":
		c.untagged(func(e *enc) *enc { return e.status("BYE", "", "Logging out") })
		c.state = stateLogout
		return c.tagged(cmd.Tag, "OK", "", "LOGOUT completed")
	case "ID":
		// RFC 2971: the server's identification; what the client says is only logged.
		if len(cmd.ID) > 0 {
			c.srv.rlog.Debug("imap client id", "remote", c.sess.remote(), "id", strings.Join(cmd.ID, " "))
		}
		if err := c.untagged(func(e *enc) *enc { return e.raw(`ID ("name" "portcullis")`) }); err != nil {
			return err
		}
		return c.reply(cmd, nil, "")
	case "STARTTLS":
		return c.startTLS(cmd)
	case "LOGIN":
		return c.login(cmd)
	case "AUTHENTICATE":
		return c.authenticate(cmd)
	}
	if c.state == stateNotAuth {
		if _, ok := wireCommands[cmd.Name]; ok {
			return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "This command is only valid in the authenticated state")
		}
		return c.tagged(cmd.Tag, "BAD", "", "Unknown command")
	}
	h, ok := wireCommands[cmd.Name]
	if !ok {
		return c.tagged(cmd.Tag, "BAD", "", "Unknown command")
	}
	return h(c, cmd)
}

func (c *wireConn) startTLS(cmd *wire.Command) error {
	if _, isTLS := c.NetConn().(*tls.Conn); isTLS || c.srv.cfg.TLSConfig == nil || c.state != stateNotAuth {
		return c.tagged(cmd.Tag, "BAD", "", "STARTTLS not available")
	}
	if err := c.tagged(cmd.Tag, "OK", "", "Begin TLS negotiation now"); err != nil {
		return err
	}
	if err := c.flushOut(); err != nil {
		return err
	}
	// Whatever the client sent after STARTTLS in the clear is dropped with the old
	// reader (a command injected before the handshake must not run: CVE-2011-0411's kind).
	tc := tls.Server(c.NetConn(), c.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(wireLoginTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("imapd: TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.setStream(tc)
	return nil
}

func (c *wireConn) loggedIn(cmd *wire.Command) error {
	c.state = stateAuth
	c.p.SetAuthenticated(true)
	return c.write(func(e *enc) error {
		return e.raw(cmd.Tag).raw(" OK [CAPABILITY ").raw(strings.Join(c.caps(), " ")).raw("] Logged in").crlf()
	})
}

func (c *wireConn) canAuth(cmd *wire.Command) (bool, error) {
	if c.state != stateNotAuth {
		return false, c.tagged(cmd.Tag, "BAD", "", "Already logged in")
	}
	if _, isTLS := c.NetConn().(*tls.Conn); !isTLS && !c.srv.cfg.Trusted && !c.clientTLS() {
		return false, c.tagged(cmd.Tag, "NO", imap.ResponseCodePrivacyRequired, "TLS is required to authenticate")
	}
	return true, nil
}

func (c *wireConn) login(cmd *wire.Command) error {
	if ok, err := c.canAuth(cmd); !ok {
		return err
	}
	if err := c.sess.Login(cmd.User, cmd.Password); err != nil {
		return c.replyErr(cmd, err)
	}
	return c.loggedIn(cmd)
}

// authenticate runs a SASL exchange (RFC 9051 §6.2.2, SASL-IR RFC 4959).
func (c *wireConn) authenticate(cmd *wire.Command) error {
	if ok, err := c.canAuth(cmd); !ok {
		return err
	}
	srv, err := c.sess.Authenticate(cmd.Mechanism)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	// next reads the client's response to a continuation request with challenge.
	next := func(challenge []byte) ([]byte, bool, error) {
		if err := c.write(func(e *enc) error { return e.raw("+ ").raw(base64.StdEncoding.EncodeToString(challenge)).crlf() }); err != nil {
			return nil, false, err
		}
		line, err := c.readLine(8192)
		if err != nil {
			return nil, false, err
		}
		if line == "*" {
			return nil, false, c.tagged(cmd.Tag, "BAD", "", "AUTHENTICATE cancelled")
		}
		resp, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, false, c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "Invalid base64 in the SASL response")
		}
		return resp, true, nil
	}
	var resp []byte
	switch ir := cmd.InitialResponse; {
	case ir == nil:
		r, ok, err := next(nil)
		if !ok {
			return err
		}
		resp = r
	case *ir == "=":
		resp = []byte{}
	default:
		if resp, err = base64.StdEncoding.DecodeString(*ir); err != nil {
			return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "Invalid base64 in the initial response")
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			return c.replyErr(cmd, err)
		}
		if done {
			return c.loggedIn(cmd)
		}
		r, ok, err := next(challenge)
		if !ok {
			return err
		}
		resp = r
	}
}

// readLine reads one line outside a command (a SASL response, IDLE's DONE), at most max
// bytes.
func (c *wireConn) readLine(max int) (string, error) {
	if err := c.waitInput(); err != nil {
		return "", err
	}
	var b []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > max {
			return "", errors.New("imapd: line too long")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
