package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxIMAPCommand bounds a command before login, literals included: room for the
// largest ID RFC 2971 §3.3 allows (30 pairs of 30 and 1024 octets, quoted: ~32 KB).
const maxIMAPCommand = 64 << 10

var errTooLong = errors.New("command too long")

type imapProto struct{ s *Server }

func (imapProto) name() string { return "imap" }

func (imapProto) refuse(err error) string { return "* BYE [UNAVAILABLE] " + err.Error() }

func (imapProto) backendAddr(b Backend) string { return b.IMAP }

func (imapProto) linkTLS() bool { return true }

func (imapProto) localListener(l Local) *PipeListener { return l.IMAP }

func (p imapProto) capability(c *clientConn) string {
	if !c.tls {
		return "IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED ID"
	}
	return "IMAP4rev1 IMAP4rev2 AUTH=PLAIN SASL-IR ID"
}

// login answers the commands of the not-authenticated state (RFC 9051 §6.1, §6.2) that
// a client uses before logging in, until LOGIN or AUTHENTICATE PLAIN succeeds.
func (p imapProto) login(c *clientConn) (credentials, bool) {
	if c.writeLine("* OK [CAPABILITY "+p.capability(c)+"] "+p.s.cfg.Hostname+" IMAP proxy ready") != nil {
		return credentials{}, false
	}
	failures := 0
	for {
		tag, cmd, args, err := readIMAPCommand(c.r, func() error { return c.writeLine("+ Ready") })
		if err != nil {
			if errors.Is(err, errTooLong) || errors.Is(err, errSyntax) {
				c.writeLine("* BYE " + err.Error())
			}
			return credentials{}, false
		}
		var user, pass string
		switch cmd {
		case "CAPABILITY":
			c.writeLine("* CAPABILITY " + p.capability(c))
			c.writeLine(tag + " OK CAPABILITY completed")
			continue
		case "NOOP":
			c.writeLine(tag + " OK NOOP completed")
			continue
		case "ID": // RFC 2971: answered here; the back-end's own ID is not asked
			c.writeLine("* ID NIL")
			c.writeLine(tag + " OK ID completed")
			continue
		case "LOGOUT":
			c.writeLine("* BYE logging out")
			c.writeLine(tag + " OK LOGOUT completed")
			return credentials{}, false
		case "STARTTLS":
			if c.tls {
				c.writeLine(tag + " BAD TLS is already active")
				continue
			}
			if c.writeLine(tag+" OK Begin TLS negotiation now") != nil || !c.startTLS() {
				return credentials{}, false
			}
			continue
		case "LOGIN":
			if !c.tls {
				c.writeLine(tag + " NO [PRIVACYREQUIRED] LOGIN only over TLS: use STARTTLS")
				continue
			}
			if len(args) != 2 {
				c.writeLine(tag + " BAD LOGIN wants a user name and a password")
				continue
			}
			user, pass = args[0], args[1]
		case "AUTHENTICATE":
			if !c.tls {
				c.writeLine(tag + " NO [PRIVACYREQUIRED] AUTHENTICATE only over TLS: use STARTTLS")
				continue
			}
			if len(args) < 1 || len(args) > 2 || !strings.EqualFold(args[0], "PLAIN") {
				c.writeLine(tag + " NO [CANNOT] only AUTHENTICATE PLAIN is supported")
				continue
			}
			resp := ""
			if len(args) == 2 {
				resp = args[1]
				if resp == "=" { // RFC 4959 §3: an empty initial response
					resp = ""
				}
			} else {
				if c.writeLine("+ ") != nil {
					return credentials{}, false
				}
				line, err := readLine(c.r, maxIMAPCommand)
				if err != nil {
					return credentials{}, false
				}
				if line == "*" { // RFC 9051 §6.2.2: the client cancels
					c.writeLine(tag + " BAD AUTHENTICATE cancelled")
					continue
				}
				resp = line
			}
			if user, pass, err = decodePlain(resp); err != nil {
				c.writeLine(tag + " BAD " + err.Error())
				continue
			}
		case "":
			c.writeLine("* BAD empty command")
			continue
		default:
			c.writeLine(tag + " BAD command not available before login")
			continue
		}
		name, err := p.s.authenticate(c, user, pass)
		if err == nil {
			return credentials{tag: tag, user: name, password: pass}, true
		}
		if temporary(err) {
			c.writeLine(tag + " NO [UNAVAILABLE] authentication temporarily unavailable, try again later")
		} else {
			c.writeLine(tag + " NO [AUTHENTICATIONFAILED] Authentication failed")
		}
		p.s.log.Info("proxy login refused", "proto", "imap", "user", user, "remote", c.ip, "err", err)
		if failures++; failures >= p.s.cfg.MaxLoginAttempts {
			c.writeLine("* BYE too many failed logins")
			return credentials{}, false
		}
	}
}

func (p imapProto) backendLogin(b *bufio.ReadWriter, addr string, cred credentials) (string, error) {
	// AUTHENTICATE PLAIN: every back-end IMAP server takes it, whatever bytes the
	// password holds (LOGIN would need literals for some); with the initial response
	// when the greeting offers SASL-IR (RFC 4959), saving a round trip per session. A
	// back-end known to offer it (from an earlier greeting) gets the command before its
	// greeting has come, in the segment of the PROXY header: the login then costs one
	// round trip, not two. A back-end that no longer offers it answers BAD, and the
	// login is made again the long way.
	_, pipelined := p.s.saslIR.Load(addr)
	tag := "P1"
	if pipelined {
		if _, err := b.WriteString(tag + " AUTHENTICATE PLAIN " + cred.plain() + "\r\n"); err != nil {
			return "", err
		}
		if err := b.Flush(); err != nil {
			return "", err
		}
	}
	greeting, err := readLine(b.Reader, 64<<10)
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return "", fmt.Errorf("greeting %.100q", greeting)
	}
	ir := strings.Contains(greeting, " SASL-IR")
	if ir {
		p.s.saslIR.Store(addr, struct{}{})
	} else {
		p.s.saslIR.Delete(addr)
	}
	sent := pipelined
	if !pipelined {
		if err := p.authenticate(b, tag, cred, ir); err != nil {
			return "", err
		}
		sent = ir
	}
	for {
		line, err := readLine(b.Reader, 64<<10)
		if err != nil {
			return "", err
		}
		switch {
		case strings.HasPrefix(line, "+") && !sent:
			sent = true
			if _, err := b.WriteString(cred.plain() + "\r\n"); err != nil {
				return "", err
			}
			if err := b.Flush(); err != nil {
				return "", err
			}
		case strings.HasPrefix(line, tag+" OK"):
			return strings.TrimPrefix(line, tag+" "), nil
		case pipelined && !ir && strings.HasPrefix(line, tag+" BAD"):
			// The pipelined initial response the back-end no longer takes: a syntax
			// error to a server without SASL-IR (RFC 4959 §3). A NO is a refusal of the
			// credentials, which a second attempt would only count twice.
			pipelined, tag, sent = false, "P2", false
			if err := p.authenticate(b, tag, cred, false); err != nil {
				return "", err
			}
		case strings.HasPrefix(line, tag+" NO"), strings.HasPrefix(line, tag+" BAD"):
			return "", &backendError{line: strings.TrimPrefix(line, tag+" ")}
		case strings.HasPrefix(line, "* BYE"):
			return "", fmt.Errorf("back-end said %.100q", line)
		case strings.HasPrefix(line, "*"):
			// untagged data before the OK: dropped (the OK carries the capabilities)
		default:
			return "", fmt.Errorf("unexpected answer %.100q", line)
		}
	}
}

// authenticate sends AUTHENTICATE PLAIN, with the initial response if ir.
func (imapProto) authenticate(b *bufio.ReadWriter, tag string, cred credentials, ir bool) error {
	cmd := tag + " AUTHENTICATE PLAIN\r\n"
	if ir {
		cmd = tag + " AUTHENTICATE PLAIN " + cred.plain() + "\r\n"
	}
	if _, err := b.WriteString(cmd); err != nil {
		return err
	}
	return b.Flush()
}

func (imapProto) loggedIn(c *clientConn, cred credentials, okLine string) {
	c.writeLine(cred.tag + " " + okLine)
}

func (imapProto) unavailable(c *clientConn, cred credentials) {
	c.writeLine(cred.tag + " NO [UNAVAILABLE] mailbox temporarily unavailable, try again later")
}

func (imapProto) rejected(c *clientConn, cred credentials, line string) {
	if strings.Contains(line, "[UNAVAILABLE]") || strings.Contains(line, "[SERVERBUG]") {
		c.writeLine(cred.tag + " NO [UNAVAILABLE] mailbox temporarily unavailable, try again later")
		return
	}
	c.writeLine(cred.tag + " NO [AUTHENTICATIONFAILED] Authentication failed")
}

var errSyntax = errors.New("syntax error")

// readLine reads a line ending in CRLF (or LF) of at most limit bytes, without the
// ending.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > limit {
			return "", errTooLong
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// readIMAPCommand reads one command: its tag, its name in upper case and its arguments
// as strings (atoms, quoted strings and literals, RFC 9051 §4.3; parenthesised lists
// come out as atoms, which the commands served here do not take). A synchronising
// literal {n} is acknowledged with cont before its bytes are read (RFC 9051 §7.5);
// LITERAL+'s {n+} is not. The whole command is bounded by maxIMAPCommand.
func readIMAPCommand(r *bufio.Reader, cont func() error) (tag, cmd string, args []string, err error) {
	total := 0
	first := true
	for {
		line, err := readLine(r, maxIMAPCommand-total)
		if err != nil {
			return "", "", nil, err
		}
		total += len(line) + 2
		// A literal announced at the end of the line.
		n, plus, rest, hasLit := literalSuffix(line)
		toks, err := splitIMAP(rest)
		if err != nil {
			return "", "", nil, err
		}
		if first {
			if len(toks) == 0 {
				if hasLit {
					return "", "", nil, errSyntax
				}
				return "", "", nil, nil
			}
			tag = toks[0]
			if !validTag(tag) {
				return "", "", nil, errSyntax
			}
			if len(toks) > 1 {
				cmd = strings.ToUpper(toks[1])
				args = append(args, toks[2:]...)
			} else if !hasLit {
				return tag, "", nil, nil
			}
			first = false
		} else {
			args = append(args, toks...)
		}
		if !hasLit {
			return tag, cmd, args, nil
		}
		if total+n > maxIMAPCommand {
			return "", "", nil, errTooLong
		}
		if !plus {
			if err := cont(); err != nil {
				return "", "", nil, err
			}
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return "", "", nil, err
		}
		total += n
		args = append(args, string(lit))
	}
}

// literalSuffix finds "{n}" or "{n+}" ending line.
func literalSuffix(line string) (n int, plus bool, rest string, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, line, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, line, false
	}
	num := line[i+1 : len(line)-1]
	if strings.HasSuffix(num, "+") {
		plus, num = true, num[:len(num)-1]
	}
	if num == "" || len(num) > 9 {
		return 0, false, line, false
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 0 || num[0] == '+' || num[0] == '-' {
		return 0, false, line, false
	}
	return v, plus, line[:i], true
}

// splitIMAP splits a line into atoms and quoted strings.
func splitIMAP(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out, nil
		}
		if s[0] == '"' {
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				ch := s[i]
				if ch == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					b.WriteByte(s[i+1])
					i++
					continue
				}
				if ch == '"' {
					break
				}
				b.WriteByte(ch)
			}
			if i >= len(s) {
				return nil, errSyntax
			}
			out = append(out, b.String())
			s = s[i+1:]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
}

// validTag says whether a tag is made of the characters RFC 9051 §9 allows (ASTRING-CHAR
// but "+"), so it can be echoed without injecting anything.
func validTag(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		ch := t[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`(){%*"\+`, ch) >= 0 {
			return false
		}
	}
	return true
}
