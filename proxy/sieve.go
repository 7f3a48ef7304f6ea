package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxSieveCommand bounds a ManageSieve command before login, literals included.
const maxSieveCommand = 8 << 10

type sieveProto struct{ s *Server }

func (sieveProto) name() string { return "managesieve" }

func (sieveProto) refuse(err error) string {
	return `BYE (TRYLATER) ` + strconv.Quote(err.Error())
}

func (sieveProto) backendAddr(b Backend) string { return b.ManageSieve }

func (sieveProto) localListener(l Local) *PipeListener { return l.ManageSieve }

// linkTLS: ManageSieve has no implicit TLS port; the link is plaintext on the trusted
// network, the PROXY header saying the client came over TLS.
func (sieveProto) linkTLS() bool { return false }

// defaultSieveCaps are the back-ends' capabilities until a health check has read them
// from one (RFC 5804 §1.7: the client learns the Sieve extensions before logging in).
var defaultSieveCaps = []string{`"SIEVE" "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext"`}

// capabilities writes the capability response (RFC 5804 §1.7): the back-ends' own lines
// but SASL, STARTTLS and the connection-bound ones, and this proxy's.
func (p sieveProto) capabilities(c *clientConn) error {
	var b strings.Builder
	b.WriteString(`"IMPLEMENTATION" "portcullis proxy"` + "\r\n")
	if c.tls {
		b.WriteString(`"SASL" "PLAIN"` + "\r\n")
	} else {
		b.WriteString(`"SASL" ""` + "\r\n" + `"STARTTLS"` + "\r\n")
	}
	caps := defaultSieveCaps
	if v, ok := p.s.sieveCaps.Load().([]string); ok {
		caps = v
	}
	for _, l := range caps {
		b.WriteString(l + "\r\n")
	}
	b.WriteString(`"VERSION" "1.0"` + "\r\n" + `OK "ready"`)
	return c.writeLine(b.String())
}

// backendCaps keeps the capability lines of a back-end's greeting worth passing on.
func backendCaps(lines []string) []string {
	var out []string
	for _, l := range lines {
		name, _, _ := strings.Cut(l, " ")
		switch strings.ToUpper(strings.Trim(name, `"`)) {
		case "IMPLEMENTATION", "SASL", "STARTTLS", "VERSION", "OWNER", "UNAUTHENTICATE":
			continue
		}
		out = append(out, l)
	}
	return out
}

// readSieveGreeting reads capability lines up to the OK ending them (RFC 5804 §1.7).
func readSieveGreeting(r *bufio.Reader) ([]string, error) {
	var lines []string
	for range 64 {
		l, err := readLine(r, 8192)
		if err != nil {
			return nil, err
		}
		up := strings.ToUpper(l)
		switch {
		case up == "OK" || strings.HasPrefix(up, "OK "):
			return lines, nil
		case strings.HasPrefix(up, "NO") || strings.HasPrefix(up, "BYE"):
			return nil, &backendError{line: l}
		}
		lines = append(lines, l)
	}
	return nil, errors.New("greeting without an end")
}

// login answers the non-authenticated state (RFC 5804 §2) until AUTHENTICATE PLAIN
// succeeds.
func (p sieveProto) login(c *clientConn) (credentials, bool) {
	if p.capabilities(c) != nil {
		return credentials{}, false
	}
	failures := 0
	for {
		cmd, args, err := readSieveCommand(c.r)
		if err != nil {
			if errors.Is(err, errTooLong) || errors.Is(err, errSyntax) {
				c.writeLine(`BYE "` + err.Error() + `"`)
			}
			return credentials{}, false
		}
		switch cmd {
		case "CAPABILITY":
			p.capabilities(c)
			continue
		case "NOOP":
			// RFC 5804 §2.11: a tag argument comes back in a TAG response code (clients
			// use it to resynchronise after STARTTLS).
			if len(args) == 1 {
				c.writeLine(`OK (TAG ` + quoteSieve(args[0]) + `) "Done"`)
			} else {
				c.writeLine(`OK "NOOP completed"`)
			}
			continue
		case "LOGOUT":
			c.writeLine(`OK "bye"`)
			return credentials{}, false
		case "STARTTLS":
			if c.tls {
				c.writeLine(`NO "TLS is already active"`)
				continue
			}
			if c.writeLine(`OK "Begin TLS negotiation now"`) != nil || !c.startTLS() {
				return credentials{}, false
			}
			// RFC 5804 §2.2: the capabilities again, after the handshake.
			if p.capabilities(c) != nil {
				return credentials{}, false
			}
			continue
		case "AUTHENTICATE":
		default:
			c.writeLine(`NO "command not available before login"`)
			continue
		}
		if !c.tls {
			c.writeLine(`NO (ENCRYPT-NEEDED) "authentication requires TLS: use STARTTLS first"`)
			continue
		}
		if len(args) < 1 || len(args) > 2 || !strings.EqualFold(args[0], "PLAIN") {
			c.writeLine(`NO "only AUTHENTICATE PLAIN is supported"`)
			continue
		}
		resp := ""
		if len(args) == 2 {
			resp = args[1]
		} else {
			// RFC 5804 §2.1: an empty challenge; the client answers with a string.
			if c.writeLine(`""`) != nil {
				return credentials{}, false
			}
			ans, err := readSieveTokens(c.r)
			if err != nil || len(ans) != 1 {
				c.writeLine(`BYE "a SASL response is one string"`)
				return credentials{}, false
			}
			line := ans[0]
			if line == "*" { // RFC 5804 §2.1: the client aborts
				c.writeLine(`NO "AUTHENTICATE cancelled"`)
				continue
			}
			resp = line
		}
		user, pass, err := decodePlain(resp)
		if err != nil {
			c.writeLine(`NO ` + strconv.Quote(err.Error()))
			continue
		}
		name, err := p.s.authenticate(c, user, pass)
		if err == nil {
			return credentials{user: name, password: pass}, true
		}
		if temporary(err) {
			c.writeLine(`NO (TRYLATER) "authentication temporarily unavailable, try again later"`)
		} else {
			c.writeLine(`NO "Authentication failed"`)
		}
		p.s.log.Info("proxy login refused", "proto", "managesieve", "user", user, "remote", c.ip, "err", err)
		if failures++; failures >= p.s.cfg.MaxLoginAttempts {
			c.writeLine(`BYE "too many failed logins"`)
			return credentials{}, false
		}
	}
}

func (sieveProto) backendLogin(b *bufio.ReadWriter, _ string, cred credentials) (string, error) {
	if _, err := readSieveGreeting(b.Reader); err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if _, err := b.WriteString(`AUTHENTICATE "PLAIN" "` + cred.plain() + "\"\r\n"); err != nil {
		return "", err
	}
	if err := b.Flush(); err != nil {
		return "", err
	}
	line, err := readLine(b.Reader, 8192)
	if err != nil {
		return "", err
	}
	up := strings.ToUpper(line)
	switch {
	case up == "OK" || strings.HasPrefix(up, "OK "):
		return line, nil
	case strings.HasPrefix(up, "NO") || strings.HasPrefix(up, "BYE"):
		return "", &backendError{line: line}
	}
	return "", fmt.Errorf("unexpected answer %.100q", line)
}

func (sieveProto) loggedIn(c *clientConn, _ credentials, okLine string) { c.writeLine(okLine) }

func (sieveProto) unavailable(c *clientConn, _ credentials) {
	c.writeLine(`NO (TRYLATER) "mailbox temporarily unavailable, try again later"`)
}

func (p sieveProto) rejected(c *clientConn, cred credentials, line string) {
	if strings.Contains(strings.ToUpper(line), "TRYLATER") {
		p.unavailable(c, cred)
		return
	}
	c.writeLine(`NO "Authentication failed"`)
}

// readSieveCommand reads one command: its name in upper case and its arguments.
func readSieveCommand(r *bufio.Reader) (cmd string, args []string, err error) {
	toks, err := readSieveTokens(r)
	if err != nil || len(toks) == 0 {
		return "", nil, err
	}
	return strings.ToUpper(toks[0]), toks[1:], nil
}

// readSieveTokens reads one line of atoms, quoted strings and literals (RFC 5804 §4;
// clients send a literal's octets without waiting, "{n}" as "{n+}"), bounded in all by
// maxSieveCommand.
func readSieveTokens(r *bufio.Reader) ([]string, error) {
	var toks []string
	total := 0
	for {
		line, err := readLine(r, maxSieveCommand-total)
		if err != nil {
			return nil, err
		}
		total += len(line) + 2
		n, _, rest, hasLit := literalSuffix(line)
		t, err := splitIMAP(rest)
		if err != nil {
			return nil, err
		}
		toks = append(toks, t...)
		if !hasLit {
			return toks, nil
		}
		if total+n > maxSieveCommand {
			return nil, errTooLong
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return nil, err
		}
		total += n
		toks = append(toks, string(lit))
	}
}

// quoteSieve quotes s as a ManageSieve quoted string (RFC 5804 §4), or a literal when it
// holds a line break.
func quoteSieve(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
