package managesieve

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
	"github.com/portcullis-mail/portcullis/store"
)

// Response codes (RFC 5804 §1.3).
const (
	codeEncryptNeeded = "ENCRYPT-NEEDED"
	codeQuotaScripts  = "QUOTA/MAXSCRIPTS"
	codeQuotaSize     = "QUOTA/MAXSIZE"
	codeNonexistent   = "NONEXISTENT"
	codeActive        = "ACTIVE"
	codeExists        = "ALREADYEXISTS"
	codeWarnings      = "WARNINGS"
	codeTryLater      = "TRYLATER"
)

// preAuthLiteral bounds a literal before login: only AUTHENTICATE's data needs one.
const preAuthLiteral = 8 << 10

type session struct {
	srv    *Server
	ctx    context.Context
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	tls    bool
	remote netip.Addr
	cs     *connState // nil from ServeConn

	loginBy       time.Time
	loginCommands int

	user    string // logged in as; "" before
	userH   *store.User
	scripts *store.Scripts

	errors   int
	commands int
	quit     bool

	// registered is the user this session is registered as logged in (Server.sessions);
	// evicted, once set by Server.Evict, is the text of the session's BYE.
	registered string
	evicted    atomic.Pointer[string]
}

// reply is a response the command handler chose; it ends the command.
type reply struct {
	status string // OK, NO or BYE
	code   string // response code, without the parentheses; may carry an argument
	text   string
}

func (r *reply) Error() string { return r.status + " " + r.text }

func no(code, format string, args ...any) error {
	return &reply{status: "NO", code: code, text: fmt.Sprintf(format, args...)}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, st *connState) {
	sess := &session{srv: s, ctx: ctx, cs: st, remote: connlimit.RemoteIP(c)}
	if s.cfg.LoginTimeout > 0 {
		sess.loginBy = time.Now().Add(s.cfg.LoginTimeout)
	}
	_, sess.tls = c.(*tls.Conn)
	sess.setConn(c)
	defer sess.close()
	sess.run()
}

func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.r = bufio.NewReaderSize(c, 4096)
	s.w = bufio.NewWriterSize(c, 8192)
}

func (s *session) close() {
	s.logout()
	s.conn.Close()
}

// logout forgets the logged-in user (UNAUTHENTICATE, the end of the session).
func (s *session) logout() {
	if s.registered != "" {
		s.srv.sessions.Remove(s.registered, s)
		s.registered = ""
	}
	if s.userH != nil {
		s.userH.Release()
	}
	s.user, s.userH, s.scripts = "", nil, nil
}

// canAuth: TLS, a trusted listener, or TLS between the client and the trusted proxy in
// front of this server (proxylisten.ClientTLS).
func (s *session) canAuth() bool {
	return s.tls || s.srv.cfg.Trusted || proxylisten.ClientTLS(s.conn)
}

// write sends a response line: status [SP "(" code ")"] [SP string] CRLF.
func (s *session) write(r *reply) error {
	line := r.status
	if r.code != "" {
		line += " (" + r.code + ")"
	}
	if r.text != "" {
		line += " " + quote(r.text)
	}
	s.w.WriteString(line + "\r\n")
	return s.flush()
}

func (s *session) flush() error {
	s.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	return s.w.Flush()
}

// ok answers OK. Without a response code the text is left out: Cyrus's sieveshell (its
// C library, as in Debian's cyrus-admin) accepts only "OK" or "OK (code ...)" and fails
// on "OK "text"" ("expected LPAREN", or "EOL2" after the capabilities), and RFC 5804 §4
// makes the text optional. The text stays in the code for whoever reads it here.
func (s *session) ok(code, text string) error {
	if code == "" {
		text = ""
	}
	return s.write(&reply{status: "OK", code: code, text: text})
}

// capabilities writes the capability lines (RFC 5804 §1.7), without the final OK.
func (s *session) capabilities() {
	cfg := &s.srv.cfg
	w := s.w
	w.WriteString(`"IMPLEMENTATION" ` + quote(cfg.Implementation) + "\r\n")
	sasl := ""
	if s.canAuth() {
		sasl = "PLAIN"
	}
	// Before TLS on a listener that is not trusted, no mechanism is offered, as Dovecot
	// does: the client must use STARTTLS first.
	w.WriteString(`"SASL" ` + quote(sasl) + "\r\n")
	w.WriteString(`"SIEVE" ` + quote(strings.Join(s.srv.deps.Checker.Extensions(), " ")) + "\r\n")
	if cfg.TLSConfig != nil && !s.tls {
		w.WriteString(`"STARTTLS"` + "\r\n")
	}
	if cfg.MaxRedirects > 0 {
		w.WriteString(`"MAXREDIRECTS" ` + quote(strconv.Itoa(cfg.MaxRedirects)) + "\r\n")
	}
	for _, ext := range s.srv.deps.Checker.Extensions() {
		if ext == "enotify" {
			w.WriteString(`"NOTIFY" "mailto"` + "\r\n")
		}
	}
	if s.user != "" {
		w.WriteString(`"OWNER" ` + quote(s.user) + "\r\n")
	}
	w.WriteString(`"UNAUTHENTICATE"` + "\r\n")
	w.WriteString(`"VERSION" "1.0"` + "\r\n")
}

var errLoginTimeout = errors.New("no login in time")

// errEvicted ends a session Server.Evict closed (the user's mailbox moved).
var errEvicted = errors.New("session evicted")

// readCommand reads the next command within the idle timeout (before the login, within
// what is left of the login timeout: a command dripped a byte at a time extends
// neither).
func (s *session) readCommand() (Command, error) {
	deadline := time.Now().Add(s.srv.cfg.IdleTimeout)
	login := s.user == "" && !s.loginBy.IsZero() && s.loginBy.Before(deadline)
	if login {
		deadline = s.loginBy
	}
	s.conn.SetReadDeadline(deadline)
	// Checked after the deadline is set: Evict marks the session, then moves the
	// deadline into the past, so a mark this misses wakes the read below.
	if s.evicted.Load() != nil {
		return Command{}, errEvicted
	}
	cmd, err := ReadCommand(s.r, s.limits())
	// Checked whatever the read gave: a read blocked before the mark does not always
	// wake at the deadline moved into the past (seen in pop3d under load), and a
	// command read after the eviction must not run.
	if s.evicted.Load() != nil {
		return cmd, errEvicted
	}
	var ne net.Error
	if login && errors.As(err, &ne) && ne.Timeout() {
		return cmd, errLoginTimeout
	}
	return cmd, err
}

func (s *session) limits() Limits {
	lim := Limits{MaxLine: int(s.srv.cfg.MaxLineSize), MaxLiteral: preAuthLiteral, MaxDiscard: preAuthLiteral, MaxArgs: 4}
	if s.user != "" {
		// A script a little over the quota is read and refused with QUOTA/MAXSIZE, as
		// HAVESPACE would have said; a huge one ends the session.
		lim.MaxLiteral = int64(s.srv.cfg.MaxScriptSize)
		lim.MaxDiscard = max(4*lim.MaxLiteral, 16<<20)
	}
	return lim
}

func (s *session) run() {
	s.capabilities()
	if err := s.ok("", ""); err != nil {
		return
	}
	for !s.quit {
		cmd, err := s.readCommand()
		var se *SyntaxError
		var big *LiteralTooBigError
		switch {
		case err == nil:
		case errors.As(err, &se):
			err = no("", "%s", se.Msg)
		case errors.As(err, &big) && big.Discarded:
			err = no(codeQuotaSize, "script too big: %d octets, at most %d", big.Size, int64(s.srv.cfg.MaxScriptSize))
		case errors.As(err, &big), errors.Is(err, ErrLineTooLong):
			s.bye("", err.Error())
			return
		case errors.Is(err, errLoginTimeout):
			s.srv.rlog.Info("managesieve login timeout", "remote", s.remote)
			s.bye("", "disconnected: no login in time")
			return
		case errors.Is(err, errEvicted):
			text := *s.evicted.Load()
			s.srv.log.Info("managesieve session closed", "user", s.user, "remote", s.remote, "reason", text)
			s.bye(codeTryLater, text)
			return
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.bye("", "idle for too long")
			}
			return
		}
		s.commands++
		if s.commands > s.srv.cfg.MaxCommands {
			s.bye("", "too many commands")
			return
		}
		if s.user == "" {
			s.loginCommands++
			if n := s.srv.cfg.MaxLoginCommands; n > 0 && s.loginCommands > n {
				s.srv.rlog.Info("managesieve too many commands before login", "remote", s.remote)
				s.bye("", "too many commands before login")
				return
			}
		}
		if err == nil {
			err = s.handle(cmd)
		}
		if err == nil {
			continue
		}
		var r *reply
		if !errors.As(err, &r) {
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			s.srv.rlog.Error("managesieve command", "remote", s.remote, "user", s.user, "command", cmd.Name, "err", err)
			r = &reply{status: "NO", code: codeTryLater, text: "internal error, try again later"}
		}
		if werr := s.write(r); werr != nil || r.status == "BYE" {
			return
		}
		s.errors++
		if s.errors >= s.srv.cfg.MaxErrors {
			s.bye("", "too many errors")
			return
		}
	}
}

// bye sends a last BYE, waiting little for a client that does not read.
func (s *session) bye(code, text string) {
	s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	line := "BYE"
	if code != "" {
		line += " (" + code + ")"
	}
	s.w.WriteString(line + " " + quote(text) + "\r\n")
	s.w.Flush()
}

// args checks the number of arguments and that they are strings (numbers where num
// says so, by position).
func args(cmd Command, min, maxArgs int, num ...int) error {
	if len(cmd.Args) < min || len(cmd.Args) > maxArgs {
		return no("", "%s: wrong number of arguments", cmd.Name)
	}
	for i, a := range cmd.Args {
		want := false
		for _, n := range num {
			want = want || n == i
		}
		if a.IsNum != want {
			return no("", "%s: argument %d must be a %s", cmd.Name, i+1, map[bool]string{true: "number", false: "string"}[want])
		}
	}
	return nil
}

func (s *session) handle(cmd Command) error {
	switch cmd.Name {
	case "CAPABILITY":
		if err := args(cmd, 0, 0); err != nil {
			return err
		}
		s.capabilities()
		return s.ok("", "")
	case "LOGOUT":
		s.quit = true
		return s.ok("", "Logout completed")
	case "NOOP":
		// RFC 5804 §2.13: a tag argument is echoed in a TAG response code.
		if err := args(cmd, 0, 1); err != nil {
			return err
		}
		if len(cmd.Args) == 1 {
			return s.ok("TAG "+quote(cmd.Args[0].Str), "Done")
		}
		return s.ok("", "Done")
	case "STARTTLS":
		return s.starttls(cmd)
	case "AUTHENTICATE":
		return s.authenticate(cmd)
	case "UNAUTHENTICATE":
		if err := args(cmd, 0, 0); err != nil {
			return err
		}
		if s.user == "" {
			return no("", "not authenticated")
		}
		s.srv.log.Info("managesieve unauthenticate", "user", s.user, "remote", s.remote)
		s.logout()
		// The next login has a login timeout of its own (RFC 5804 §2.14.1: the session
		// is as if it had just begun, TLS kept).
		if s.srv.cfg.LoginTimeout > 0 {
			s.loginBy = time.Now().Add(s.srv.cfg.LoginTimeout)
		}
		s.loginCommands = 0
		return s.ok("", "Unauthenticate completed")
	}
	switch cmd.Name {
	case "HAVESPACE", "PUTSCRIPT", "LISTSCRIPTS", "SETACTIVE", "GETSCRIPT", "DELETESCRIPT", "RENAMESCRIPT", "CHECKSCRIPT":
		if s.user == "" {
			return no("", "authenticate first")
		}
	default:
		return no("", "unknown command %s", cmd.Name)
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	switch cmd.Name {
	case "HAVESPACE":
		if err := args(cmd, 2, 2, 1); err != nil {
			return err
		}
		if err := s.scripts.CheckSpace(ctx, cmd.Args[0].Str, int64(cmd.Args[1].Num), s.quota()); err != nil {
			return storeReply(err)
		}
		return s.ok("", "Putscript would succeed")
	case "PUTSCRIPT":
		if err := args(cmd, 2, 2); err != nil {
			return err
		}
		name, text := cmd.Args[0].Str, []byte(cmd.Args[1].Str)
		if err := store.CheckScriptName(name); err != nil {
			return storeReply(err)
		}
		if err := s.scripts.CheckSpace(ctx, name, int64(len(text)), s.quota()); err != nil {
			return storeReply(err)
		}
		warnings, err := s.srv.deps.Checker.Check(text)
		if err != nil {
			return no("", "%s", err.Error())
		}
		if err := s.scripts.Put(ctx, name, text, s.quota()); err != nil {
			return storeReply(err)
		}
		s.srv.log.Info("managesieve putscript", "user", s.user, "script", name, "size", len(text))
		if warnings != "" {
			return s.ok(codeWarnings, warnings)
		}
		return s.ok("", "Putscript completed")
	case "CHECKSCRIPT":
		if err := args(cmd, 1, 1); err != nil {
			return err
		}
		if int64(len(cmd.Args[0].Str)) > int64(s.srv.cfg.MaxScriptSize) {
			return no(codeQuotaSize, "script too big")
		}
		warnings, err := s.srv.deps.Checker.Check([]byte(cmd.Args[0].Str))
		if err != nil {
			return no("", "%s", err.Error())
		}
		if warnings != "" {
			return s.ok(codeWarnings, warnings)
		}
		return s.ok("", "Script is valid")
	case "LISTSCRIPTS":
		if err := args(cmd, 0, 0); err != nil {
			return err
		}
		list, err := s.scripts.List(ctx)
		if err != nil {
			return err
		}
		for _, sc := range list {
			s.w.WriteString(quote(sc.Name))
			if sc.Active {
				s.w.WriteString(" ACTIVE")
			}
			s.w.WriteString("\r\n")
		}
		return s.ok("", "Listscripts completed")
	case "SETACTIVE":
		if err := args(cmd, 1, 1); err != nil {
			return err
		}
		name := cmd.Args[0].Str
		if name != "" {
			// RFC 5804 §2.8: a script that does not compile (the compiler may have
			// changed since it was stored) is not activated.
			text, err := s.scripts.Get(ctx, name)
			if err != nil {
				return storeReply(err)
			}
			if _, err := s.srv.deps.Checker.Check(text); err != nil {
				return no("", "%s", err.Error())
			}
		}
		if err := s.scripts.SetActive(ctx, name); err != nil {
			return storeReply(err)
		}
		s.srv.log.Info("managesieve setactive", "user", s.user, "script", name)
		return s.ok("", "Setactive completed")
	case "GETSCRIPT":
		if err := args(cmd, 1, 1); err != nil {
			return err
		}
		text, err := s.scripts.Get(ctx, cmd.Args[0].Str)
		if err != nil {
			return storeReply(err)
		}
		// RFC 5804 §2.9: the script is a literal, then CRLF, then the OK.
		s.w.WriteString("{" + strconv.Itoa(len(text)) + "}\r\n")
		s.w.Write(text)
		s.w.WriteString("\r\n")
		return s.ok("", "Getscript completed")
	case "DELETESCRIPT":
		if err := args(cmd, 1, 1); err != nil {
			return err
		}
		if err := s.scripts.Delete(ctx, cmd.Args[0].Str); err != nil {
			return storeReply(err)
		}
		s.srv.log.Info("managesieve deletescript", "user", s.user, "script", cmd.Args[0].Str)
		return s.ok("", "Deletescript completed")
	case "RENAMESCRIPT":
		if err := args(cmd, 2, 2); err != nil {
			return err
		}
		if err := s.scripts.Rename(ctx, cmd.Args[0].Str, cmd.Args[1].Str); err != nil {
			return storeReply(err)
		}
		s.srv.log.Info("managesieve renamescript", "user", s.user, "script", cmd.Args[0].Str, "to", cmd.Args[1].Str)
		return s.ok("", "Renamescript completed")
	}
	return no("", "unknown command %s", cmd.Name)
}

func (s *session) quota() store.ScriptLimits {
	return store.ScriptLimits{MaxScripts: s.srv.cfg.MaxScripts, MaxSize: int64(s.srv.cfg.MaxScriptSize)}
}

// storeReply turns the store's script errors into responses with their codes.
func storeReply(err error) error {
	switch {
	case errors.Is(err, store.ErrNoScript):
		return no(codeNonexistent, "there is no such script")
	case errors.Is(err, store.ErrScriptActive):
		return no(codeActive, "the script is active; deactivate it first")
	case errors.Is(err, store.ErrScriptExists):
		return no(codeExists, "a script by that name exists")
	case errors.Is(err, store.ErrTooManyScripts):
		return no(codeQuotaScripts, "too many scripts")
	case errors.Is(err, store.ErrScriptTooBig):
		return no(codeQuotaSize, "script too big")
	case errors.Is(err, store.ErrBadScriptName):
		return no("", "invalid script name")
	}
	return err
}

func (s *session) starttls(cmd Command) error {
	if err := args(cmd, 0, 0); err != nil {
		return err
	}
	if s.srv.cfg.TLSConfig == nil {
		return no("", "STARTTLS not available")
	}
	if s.tls {
		return no("", "already using TLS")
	}
	if s.user != "" {
		return no("", "STARTTLS is not allowed after authentication")
	}
	if err := s.ok("", "Begin TLS negotiation now"); err != nil {
		return err
	}
	// Anything pipelined after STARTTLS would be taken as protected: refuse it.
	if s.r.Buffered() > 0 {
		s.quit = true
		return nil
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.srv.rlog.Info("managesieve TLS handshake failed", "remote", s.remote, "err", err)
		s.quit = true
		return nil
	}
	s.setConn(tc)
	s.tls = true
	if s.cs != nil {
		s.cs.startedTLS()
	}
	// RFC 5804 §2.2: after the TLS negotiation the server re-issues its capabilities.
	s.capabilities()
	return s.ok("", "")
}

func (s *session) authenticate(cmd Command) error {
	if s.user != "" {
		return no("", "already authenticated")
	}
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].IsNum || (len(cmd.Args) == 2 && cmd.Args[1].IsNum) {
		return no("", "AUTHENTICATE: wrong arguments")
	}
	if !s.canAuth() {
		return no(codeEncryptNeeded, "authentication requires TLS: use STARTTLS first")
	}
	if !strings.EqualFold(cmd.Args[0].Str, "PLAIN") {
		return no("", "unsupported SASL mechanism")
	}
	var authed string
	var authErr error
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			authed, authErr = s.authenticateAs(identity, username, password) // proxylogin.go
			return authErr
		}
		authed, authErr = s.srv.deps.Auth.Authenticate(s.ctx, username, password, s.remote)
		return authErr
	})
	var resp []byte
	if len(cmd.Args) == 2 {
		b, err := base64.StdEncoding.DecodeString(cmd.Args[1].Str)
		if err != nil {
			return no("", "bad base64 in the initial response")
		}
		resp = b
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			if authErr != nil {
				var t interface{ Temporary() bool }
				if errors.As(authErr, &t) && t.Temporary() {
					return no(codeTryLater, "authentication is not possible now, try again later")
				}
			}
			s.srv.rlog.Info("managesieve authentication failed", "remote", s.remote)
			return no("", "authentication failed")
		}
		if done {
			return s.login(authed)
		}
		// RFC 5804 §2.1: the challenge is a string; the client answers with a string
		// or "*" to cancel.
		s.w.WriteString(quote(base64.StdEncoding.EncodeToString(challenge)) + "\r\n")
		if err := s.flush(); err != nil {
			return err
		}
		line, err := s.readSASLResponse()
		if err != nil {
			return err
		}
		if line == "*" {
			return no("", "authentication cancelled")
		}
		if resp, err = base64.StdEncoding.DecodeString(line); err != nil {
			return no("", "bad base64")
		}
	}
}

// readSASLResponse reads a client's SASL response line: one string (quoted or literal),
// or a bare "*".
func (s *session) readSASLResponse() (string, error) {
	deadline := time.Now().Add(s.srv.cfg.IdleTimeout)
	if !s.loginBy.IsZero() && s.loginBy.Before(deadline) {
		deadline = s.loginBy
	}
	s.conn.SetReadDeadline(deadline)
	str, err := ReadString(s.r, s.limits())
	var se *SyntaxError
	if errors.As(err, &se) {
		return "", no("", "%s", se.Msg)
	}
	return str, err
}

func (s *session) login(user string) error {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	h, err := s.srv.deps.Store.Open(ctx, user)
	if err != nil {
		return fmt.Errorf("opening the scripts of %s: %w", user, err)
	}
	s.user, s.userH, s.scripts = user, h, h.Scripts()
	s.registered = user
	s.srv.sessions.Add(user, s, s.conn)
	if s.cs != nil {
		s.cs.slot.LoggedIn()
	}
	s.srv.log.Info("managesieve login", "user", user, "remote", s.remote, "tls", s.tls)
	return s.ok("", "Logged in")
}
