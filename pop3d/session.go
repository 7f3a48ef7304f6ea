package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/portcullis-mail/portcullis/internal/proxylisten"
	"github.com/portcullis-mail/portcullis/store"
)

type state int

const (
	stateAuth  state = iota // RFC 1939 §4 AUTHORIZATION
	stateTrans              // §5 TRANSACTION
)

type session struct {
	srv    *Server
	ctx    context.Context
	conn   net.Conn
	bc     bufferedConn
	tls    bool
	remote netip.Addr
	cs     *connState // the listener's accounting; nil from ServeConn
	// loginBy is when a session that has not logged in is closed (zero: never);
	// loginCommands counts its commands.
	loginBy       time.Time
	loginCommands int

	state    state
	userArg  string // from USER
	user     *store.User
	locked   string
	mb       store.Mailbox
	msgs     []store.Message
	uidls    map[uint32]string // kept from the old server by a migration (store.SetUIDL)
	deleted  []bool
	retr     []bool
	errors   int
	commands int
	quit     bool

	// registered is the user this session is registered as logged in (Server.sessions);
	// evicted, once set by Server.Evict, is the text of the session's last -ERR.
	registered string
	evicted    atomic.Pointer[string]
}

// errTooLong answers a line longer than Config.MaxLineSize; the line is read to its end
// and dropped, and the session goes on (as a bad command).
var errTooLong = replyErr("line too long")

func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.bc = bufferedConn{r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 16384)}
}

func (s *session) close() {
	if s.registered != "" {
		s.srv.sessions.Remove(s.registered, s)
	}
	if s.user != nil {
		s.user.Release()
	}
	if s.locked != "" {
		s.srv.unlock(s.locked)
	}
	s.conn.Close()
}

func (s *session) reply(ok bool, format string, args ...any) error {
	status := "+OK"
	if !ok {
		status = "-ERR"
	}
	msg := fmt.Sprintf(format, args...)
	if msg != "" {
		status += " " + msg
	}
	s.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	s.bc.w.WriteString(status + "\r\n")
	return s.bc.w.Flush()
}

// errLoginTimeout ends a session that did not log in within Config.LoginTimeout.
var errLoginTimeout = errors.New("no login in time")

// errEvicted ends a session Server.Evict closed (the user's mailbox moved).
var errEvicted = errors.New("session evicted")

// readLine reads one CRLF (or LF) terminated line of at most MaxLineSize. The whole line
// must arrive within the idle timeout, and before the login within LoginTimeout of the
// connection: a line dripped a byte at a time does not extend either.
func (s *session) readLine() (string, error) {
	deadline := time.Now().Add(s.srv.cfg.IdleTimeout)
	login := s.state == stateAuth && !s.loginBy.IsZero() && s.loginBy.Before(deadline)
	if login {
		deadline = s.loginBy
	}
	s.conn.SetReadDeadline(deadline)
	// Checked after the deadline is set: Evict marks the session, then moves the
	// deadline into the past, so a mark this misses wakes the read below.
	if s.evicted.Load() != nil {
		return "", errEvicted
	}
	line, err := s.readLineUntil()
	// Checked whatever the read gave: a read blocked before the mark does not always
	// wake at the deadline moved into the past (seen under load: the next line was
	// returned instead), and a command read after the eviction must not run (a QUIT
	// would enter UPDATE and commit the DELEs).
	if s.evicted.Load() != nil {
		return "", errEvicted
	}
	var ne net.Error
	if login && errors.As(err, &ne) && ne.Timeout() {
		return "", errLoginTimeout
	}
	return line, err
}

// maxDiscard bounds how much of an over-long line is read and dropped before the
// session ends instead: a client may overflow a line by mistake, not stream one forever.
const maxDiscard = 4 << 20

// errLineFlood ends a session whose over-long line went on past maxDiscard.
var errLineFlood = errors.New("line too long")

func (s *session) readLineUntil() (string, error) {
	var buf []byte
	tooLong, dropped := false, 0
	for {
		chunk, err := s.bc.r.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			if len(buf) > int(s.srv.cfg.MaxLineSize) {
				tooLong, buf = true, nil // skip to the line's end, holding none of it
			}
		} else if dropped += len(chunk); dropped > maxDiscard {
			return "", errLineFlood
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	if tooLong {
		return "", errTooLong
	}
	line := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
	return line, nil
}

// canAuth: TLS, a trusted listener, or TLS between the client and the trusted proxy in
// front of this server (proxylisten.ClientTLS).
func (s *session) canAuth() bool {
	return s.tls || s.srv.cfg.Trusted || proxylisten.ClientTLS(s.conn)
}

func (s *session) run() {
	if err := s.reply(true, "%s POP3 server ready", s.srv.cfg.Hostname); err != nil {
		return
	}
	for !s.quit {
		line, err := s.readLine()
		if err != nil && !errors.Is(err, errTooLong) {
			// On a timeout the connection closes without a response (RFC 1939 §3).
			switch {
			case errors.Is(err, errLoginTimeout):
				s.srv.rlog.Info("pop3 login timeout", "remote", s.remote)
			case errors.Is(err, errLineFlood):
				s.replyBye("line too long, bye")
			case errors.Is(err, errEvicted):
				// No UPDATE: the deletions asked for are not committed (RFC 1939 §6).
				s.srv.log.Info("pop3 session closed", "user", s.registered, "remote", s.remote, "reason", *s.evicted.Load())
				s.replyBye("[SYS/TEMP] " + *s.evicted.Load())
			}
			return
		}
		s.commands++
		if s.commands > s.srv.cfg.MaxCommands {
			s.reply(false, "too many commands")
			return
		}
		if s.state == stateAuth {
			s.loginCommands++
			if n := s.srv.cfg.MaxLoginCommands; n > 0 && s.loginCommands > n {
				s.srv.rlog.Info("pop3 too many commands before login", "remote", s.remote)
				s.replyBye("too many commands before login")
				return
			}
		}
		if err == nil {
			var cmd Command
			if cmd, err = ParseCommand(line); err == nil {
				err = s.handle(cmd)
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, errLineFlood) { // inside AUTH
				s.replyBye("line too long, bye")
				return
			}
			var re replyErr
			if !errors.As(err, &re) && !errors.Is(err, errSyntax) {
				s.srv.rlog.Error("pop3 command", "remote", s.remote, "err", err) // a server fault
			}
			s.errors++
			if werr := s.reply(false, "%s", errText(err)); werr != nil {
				return
			}
			if s.errors >= s.srv.cfg.MaxErrors {
				s.reply(false, "too many errors, bye")
				return
			}
		}
	}
}

// replyBye sends a last -ERR before the session is closed, waiting little for a client
// that does not read.
func (s *session) replyBye(text string) {
	s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	s.bc.w.WriteString("-ERR " + text + "\r\n")
	s.bc.w.Flush()
}

// replyErr is an error whose text goes to the client as is.
type replyErr string

func (e replyErr) Error() string { return string(e) }

func errText(err error) string {
	var re replyErr
	if errors.As(err, &re) {
		return string(re)
	}
	if errors.Is(err, errSyntax) {
		return err.Error()
	}
	return "[SYS/TEMP] internal error"
}

func (s *session) handle(cmd Command) error {
	switch cmd.Name {
	case "CAPA":
		return s.capa()
	case "QUIT":
		return s.quitCmd()
	}
	if s.state == stateAuth {
		switch cmd.Name {
		case "STLS":
			return s.stls(cmd)
		case "USER":
			if !s.canAuth() {
				return replyErr("[AUTH] TLS required, use STLS first")
			}
			if len(cmd.Args) != 1 {
				return replyErr("USER needs one argument")
			}
			s.userArg = cmd.Args[0]
			return s.reply(true, "send PASS")
		case "PASS":
			if !s.canAuth() {
				return replyErr("[AUTH] TLS required, use STLS first")
			}
			if s.userArg == "" || len(cmd.Args) != 1 {
				return replyErr("USER first")
			}
			user := s.userArg
			s.userArg = ""
			return s.login(user, cmd.Args[0])
		case "AUTH":
			return s.authCmd(cmd)
		}
		return notValid(cmd)
	}
	switch cmd.Name {
	case "NOOP":
		return s.reply(true, "")
	case "STAT":
		n, size := 0, int64(0)
		for i, m := range s.msgs {
			if !s.deleted[i] {
				n++
				size += m.SizeCRLF
			}
		}
		return s.reply(true, "%d %d", n, size)
	case "LIST", "UIDL":
		return s.list(cmd)
	case "RETR":
		if len(cmd.Args) != 1 {
			return replyErr("RETR needs a message number")
		}
		i, err := s.msgIndex(cmd.Args[0])
		if err != nil {
			return err
		}
		return s.send(i, -1)
	case "TOP":
		if len(cmd.Args) != 2 {
			return replyErr("TOP needs a message number and a line count")
		}
		i, err := s.msgIndex(cmd.Args[0])
		if err != nil {
			return err
		}
		n, err := lineCount(cmd.Args[1])
		if err != nil {
			return err
		}
		return s.send(i, n)
	case "DELE":
		if len(cmd.Args) != 1 {
			return replyErr("DELE needs a message number")
		}
		i, err := s.msgIndex(cmd.Args[0])
		if err != nil {
			return err
		}
		s.deleted[i] = true
		return s.reply(true, "message %d deleted", i+1)
	case "RSET":
		for i := range s.deleted {
			s.deleted[i] = false
		}
		return s.reply(true, "")
	}
	return notValid(cmd)
}

// commands are the ones this server knows, in any state.
var commands = map[string]bool{"CAPA": true, "QUIT": true, "STLS": true, "USER": true, "PASS": true,
	"AUTH": true, "NOOP": true, "STAT": true, "LIST": true, "UIDL": true, "RETR": true, "TOP": true,
	"DELE": true, "RSET": true}

// notValid tells an unknown command (APOP, LAST, XTND...) from one of the wrong state.
func notValid(cmd Command) error {
	if !commands[cmd.Name] {
		return replyErr("unknown command")
	}
	return replyErr("command not valid in this state")
}

func (s *session) capa() error {
	lines := []string{"CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
		"EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION portcullis"}
	if s.state == stateAuth {
		if s.srv.cfg.TLSConfig != nil && !s.tls {
			lines = append(lines, "STLS")
		}
		// RFC 2595 §4: do not offer plaintext mechanisms before TLS.
		if s.canAuth() {
			lines = append(lines, "USER", "SASL PLAIN")
		}
	}
	if err := s.reply(true, "capability list follows"); err != nil {
		return err
	}
	for _, l := range lines {
		s.bc.w.WriteString(l + "\r\n")
	}
	s.bc.w.WriteString(".\r\n")
	return s.bc.w.Flush()
}

func (s *session) stls(cmd Command) error {
	if len(cmd.Args) != 0 {
		return replyErr("STLS takes no argument")
	}
	if s.srv.cfg.TLSConfig == nil {
		return replyErr("STLS not available")
	}
	if s.tls {
		return replyErr("already using TLS")
	}
	if err := s.reply(true, "begin TLS negotiation"); err != nil {
		return err
	}
	// RFC 2595 §4: the client must not pipeline after STLS. Whatever it sent in the clear
	// would otherwise run as commands (CVE-2011-0411's kind of injection): the session
	// ends, as ManageSieve's does.
	if s.bc.r.Buffered() > 0 {
		s.srv.rlog.Info("pop3 data pipelined after STLS", "remote", s.remote)
		s.quit = true
		return nil
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.quit = true
		return nil
	}
	s.setConn(tc)
	s.tls = true
	if s.cs != nil {
		s.cs.startedTLS()
	}
	return nil
}

// authCmd implements RFC 5034 AUTH with go-sasl's PLAIN server.
func (s *session) authCmd(cmd Command) error {
	if len(cmd.Args) == 0 {
		// RFC 5034 §4: without a mechanism, list them (as CAPA SASL does).
		if err := s.reply(true, ""); err != nil {
			return err
		}
		if s.canAuth() {
			s.bc.w.WriteString("PLAIN\r\n")
		}
		s.bc.w.WriteString(".\r\n")
		return s.bc.w.Flush()
	}
	if !s.canAuth() {
		return replyErr("[AUTH] TLS required, use STLS first")
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") || len(cmd.Args) > 2 {
		return replyErr("unsupported mechanism")
	}
	var authed string
	var authErr error
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			authed, authErr = s.authenticateAs(identity, username, password) // proxylogin.go
			return authErr
		}
		authed, authErr = s.srv.auth.Authenticate(s.ctx, username, password, s.remote)
		return authErr
	})
	var resp []byte
	if len(cmd.Args) == 2 {
		if cmd.Args[1] == "=" {
			resp = []byte{}
		} else {
			b, err := base64.StdEncoding.DecodeString(cmd.Args[1])
			if err != nil {
				return replyErr("bad base64 in initial response")
			}
			resp = b
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			if authErr != nil {
				return s.authFailed(authErr)
			}
			return replyErr("[AUTH] authentication failed")
		}
		if done {
			return s.open(authed)
		}
		s.conn.SetWriteDeadline(time.Now().Add(time.Minute))
		s.bc.w.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
		if err := s.bc.w.Flush(); err != nil {
			return err
		}
		line, err := s.readLine()
		if err != nil {
			return err
		}
		if line == "*" {
			return replyErr("authentication cancelled")
		}
		resp, err = base64.StdEncoding.DecodeString(line)
		if err != nil {
			return replyErr("bad base64")
		}
	}
}

func (s *session) authFailed(err error) error {
	s.srv.rlog.Info("pop3 auth failed", "remote", s.remote, "err", err)
	switch {
	case isTemporary(err):
		return replyErr("[SYS/TEMP] authentication temporarily unavailable")
	default:
		// Slow down guessing a little; throttling proper is the authenticator's job.
		time.Sleep(s.srv.failDelay)
		return replyErr("[AUTH] invalid credentials")
	}
}

func (s *session) login(user, pass string) error {
	name, err := s.srv.auth.Authenticate(s.ctx, user, pass, s.remote)
	if err != nil {
		return s.authFailed(err)
	}
	return s.open(name)
}

// open locks and snapshots the maildrop (RFC 1939 §4: the session enters TRANSACTION).
func (s *session) open(user string) error {
	if !s.srv.lock(user) {
		return replyErr("[IN-USE] maildrop already locked by another POP3 session")
	}
	s.locked = user
	u, err := s.srv.store.Open(s.ctx, user)
	if err != nil {
		s.srv.unlock(user)
		s.locked = ""
		return fmt.Errorf("pop3d: open maildrop of %s: %w", user, err)
	}
	s.user = u
	mb, msgs, err := u.Messages(s.ctx, store.Inbox)
	if err != nil {
		return fmt.Errorf("pop3d: list maildrop of %s: %w", user, err)
	}
	if len(msgs) > s.srv.cfg.MaxMessages {
		msgs = msgs[:s.srv.cfg.MaxMessages]
	}
	s.mb, s.msgs = mb, msgs
	if s.uidls, err = u.UIDLs(s.ctx, mb); err != nil {
		return fmt.Errorf("pop3d: list maildrop of %s: %w", user, err)
	}
	s.deleted = make([]bool, len(msgs))
	s.retr = make([]bool, len(msgs))
	s.state = stateTrans
	s.registered = user
	s.srv.sessions.Add(user, s, s.conn)
	if s.cs != nil {
		s.cs.slot.LoggedIn()
	}
	s.srv.log.Info("pop3 login", "user", user, "remote", s.remote, "messages", len(msgs))
	return s.reply(true, "maildrop has %d messages", len(msgs))
}

func (s *session) msgIndex(arg string) (int, error) {
	n, err := msgNumber(arg)
	if err != nil {
		return 0, err
	}
	if n > len(s.msgs) {
		return 0, replyErr("no such message")
	}
	if s.deleted[n-1] {
		return 0, replyErr("message already deleted")
	}
	return n - 1, nil
}

func (s *session) list(cmd Command) error {
	line := func(i int) string {
		if cmd.Name == "LIST" {
			return fmt.Sprintf("%d %d", i+1, s.msgs[i].SizeCRLF)
		}
		return fmt.Sprintf("%d %s", i+1, s.uidl(i))
	}
	if len(cmd.Args) > 1 {
		return replyErr("too many arguments")
	}
	if len(cmd.Args) == 1 {
		i, err := s.msgIndex(cmd.Args[0])
		if err != nil {
			return err
		}
		return s.reply(true, "%s", line(i))
	}
	if err := s.reply(true, ""); err != nil {
		return err
	}
	for i := range s.msgs {
		if !s.deleted[i] {
			s.bc.w.WriteString(line(i) + "\r\n")
		}
	}
	s.bc.w.WriteString(".\r\n")
	return s.bc.w.Flush()
}

// send writes message i, dot-stuffed with CRLF line ends (RFC 1939 §3); with lines >= 0
// only the header, the blank line and that many body lines (TOP, §7).
func (s *session) send(i, lines int) error {
	f, err := s.user.Open(s.mb, s.msgs[i])
	if err != nil {
		if errors.Is(err, store.ErrNoMessage) {
			return replyErr("message was deleted by another session")
		}
		return err
	}
	defer f.Close()
	if err := s.reply(true, "%d octets", s.msgs[i].SizeCRLF); err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(10 * time.Minute))
	dw := textproto.NewWriter(s.bc.w).DotWriter()
	br := bufio.NewReaderSize(f, 32*1024)
	// A line longer than the buffer comes in several reads: only the first read of a
	// line counts it (TOP), and only a whole line can be the blank one ending the header.
	inBody, bodyLines, lineStart := false, 0, true
	for {
		l, rerr := br.ReadSlice('\n')
		if len(l) > 0 {
			if lines >= 0 && inBody && lineStart {
				if bodyLines >= lines {
					break
				}
				bodyLines++
			}
			if _, err := dw.Write(l); err != nil {
				return err
			}
			if !inBody && lineStart && (bytes.Equal(l, []byte("\r\n")) || bytes.Equal(l, []byte("\n"))) {
				inBody = true
			}
			lineStart = l[len(l)-1] == '\n'
		}
		if rerr != nil {
			if errors.Is(rerr, bufio.ErrBufferFull) {
				continue
			}
			if !errors.Is(rerr, io.EOF) {
				// Not dw.Close: its terminating dot would say the message is whole, and
				// the client would keep (and may DELE) what it got. The session ends
				// without UPDATE (RFC 1939 §6): the client sees a response cut short.
				s.srv.rlog.Error("pop3 read message", "user", s.user.Name(), "err", rerr)
				s.quit = true
				return nil
			}
			break
		}
	}
	if err := dw.Close(); err != nil {
		return err
	}
	if lines < 0 {
		s.retr[i] = true
	}
	return s.bc.w.Flush()
}

// quitCmd ends the session; in TRANSACTION it enters UPDATE and commits the deletions
// (RFC 1939 §6). A failed commit answers -ERR and leaves every message in place.
func (s *session) quitCmd() error {
	s.quit = true
	if s.state != stateTrans {
		return s.reply(true, "bye")
	}
	var del, seen []uint32
	for i, m := range s.msgs {
		if s.deleted[i] {
			del = append(del, m.UID)
		} else if s.retr[i] && *s.srv.cfg.MarkSeen {
			seen = append(seen, m.UID)
		}
	}
	if len(seen) > 0 {
		if _, err := s.user.SetFlags(s.ctx, s.mb, seen, store.FlagsAdd, []string{store.FlagSeen}, nil); err != nil {
			s.srv.rlog.Warn("pop3 mark seen", "user", s.user.Name(), "err", err)
		}
	}
	var err error
	if len(del) > 0 {
		_, err = s.user.Remove(s.ctx, s.mb, del)
	}
	// The maildrop is free before the reply: a client that reconnects as soon as it reads
	// it (a poller, or the next command of a script) must not find it still locked.
	s.srv.unlock(s.locked)
	s.locked = ""
	if err != nil {
		s.srv.rlog.Error("pop3 update", "user", s.user.Name(), "err", err)
		return s.reply(false, "[SYS/TEMP] some deleted messages not removed")
	}
	return s.reply(true, "bye, %d messages deleted", len(del))
}
