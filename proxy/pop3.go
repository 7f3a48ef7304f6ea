package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// maxPOP3Line bounds a command line before login (RFC 2449 §4 allows 255 octets for a
// command; AUTH's base64 response may be longer).
const maxPOP3Line = 2048

type pop3Proto struct{ s *Server }

func (pop3Proto) name() string { return "pop3" }

func (pop3Proto) refuse(err error) string { return "-ERR [SYS/TEMP] " + err.Error() }

func (pop3Proto) backendAddr(b Backend) string { return b.POP3 }

func (pop3Proto) linkTLS() bool { return true }

func (pop3Proto) localListener(l Local) *PipeListener { return l.POP3 }

func (pop3Proto) capa(c *clientConn) []string {
	if !c.tls {
		return []string{"CAPA", "STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	}
	return []string{"CAPA", "USER", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
}

// login answers the AUTHORIZATION state (RFC 1939 §4, RFC 2449, RFC 2595 §4 STLS,
// RFC 5034 AUTH) until USER/PASS or AUTH PLAIN succeeds.
func (p pop3Proto) login(c *clientConn) (credentials, bool) {
	if c.writeLine("+OK "+p.s.cfg.Hostname+" POP3 proxy ready") != nil {
		return credentials{}, false
	}
	failures := 0
	user := ""
	for {
		line, err := readLine(c.r, maxPOP3Line)
		if err != nil {
			if errors.Is(err, errTooLong) {
				c.writeLine("-ERR line too long")
			}
			return credentials{}, false
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		var pass string
		switch verb {
		case "CAPA":
			c.writeLine("+OK capability list follows")
			for _, l := range p.capa(c) {
				c.writeLine(l)
			}
			c.writeLine(".")
			continue
		case "QUIT":
			c.writeLine("+OK bye")
			return credentials{}, false
		case "STLS":
			if c.tls {
				c.writeLine("-ERR TLS is already active")
				continue
			}
			if c.writeLine("+OK begin TLS negotiation") != nil || !c.startTLS() {
				return credentials{}, false
			}
			user = ""
			continue
		case "USER":
			if !c.tls {
				c.writeLine("-ERR [AUTH] USER only over TLS: use STLS")
				continue
			}
			if arg == "" {
				c.writeLine("-ERR USER wants a name")
				continue
			}
			user = arg
			c.writeLine("+OK send PASS")
			continue
		case "PASS":
			if !c.tls || user == "" {
				c.writeLine("-ERR [AUTH] USER first, over TLS")
				continue
			}
			pass = arg
		case "AUTH":
			if !c.tls {
				c.writeLine("-ERR [AUTH] AUTH only over TLS: use STLS")
				continue
			}
			mech, resp, hasResp := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				c.writeLine("-ERR [AUTH] only AUTH PLAIN is supported")
				continue
			}
			if !hasResp {
				if c.writeLine("+ ") != nil {
					return credentials{}, false
				}
				if resp, err = readLine(c.r, maxPOP3Line); err != nil {
					return credentials{}, false
				}
				if resp == "*" { // RFC 5034 §4: cancelled
					c.writeLine("-ERR AUTH cancelled")
					continue
				}
			}
			if resp == "=" {
				resp = ""
			}
			if user, pass, err = decodePlain(resp); err != nil {
				c.writeLine("-ERR " + err.Error())
				user = ""
				continue
			}
		default:
			c.writeLine("-ERR command not available before login")
			continue
		}
		name, err := p.s.authenticate(c, user, pass)
		if err == nil {
			return credentials{user: name, password: pass}, true
		}
		if temporary(err) {
			c.writeLine("-ERR [SYS/TEMP] authentication temporarily unavailable, try again later")
		} else {
			c.writeLine("-ERR [AUTH] authentication failed")
		}
		p.s.log.Info("proxy login refused", "proto", "pop3", "user", user, "remote", c.ip, "err", err)
		user = ""
		if failures++; failures >= p.s.cfg.MaxLoginAttempts {
			return credentials{}, false
		}
	}
}

func (pop3Proto) backendLogin(b *bufio.ReadWriter, _ string, cred credentials) (string, error) {
	greeting, err := readLine(b.Reader, 4096)
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(greeting, "+OK") {
		return "", fmt.Errorf("greeting %.100q", greeting)
	}
	cmd := func(line string) (string, error) {
		if _, err := b.WriteString(line + "\r\n"); err != nil {
			return "", err
		}
		if err := b.Flush(); err != nil {
			return "", err
		}
		return readLine(b.Reader, 4096)
	}
	if cred.master != "" {
		// The master login needs SASL's authorization identity: AUTH PLAIN with an
		// initial response (RFC 5034 §4).
		ans, err := cmd("AUTH PLAIN " + cred.plain())
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(ans, "+OK") {
			return "", &backendError{line: ans}
		}
		return ans, nil
	}
	// USER/PASS (RFC 1939 §7) rather than SASL: every POP3 server has it.
	if strings.ContainsAny(cred.user+cred.password, "\r\n") {
		return "", errors.New("user name or password with a line break")
	}
	ans, err := cmd("USER " + cred.user)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(ans, "+OK") {
		return "", &backendError{line: ans}
	}
	if ans, err = cmd("PASS " + cred.password); err != nil {
		return "", err
	}
	if !strings.HasPrefix(ans, "+OK") {
		return "", &backendError{line: ans}
	}
	return ans, nil
}

func (pop3Proto) loggedIn(c *clientConn, _ credentials, okLine string) { c.writeLine(okLine) }

func (pop3Proto) unavailable(c *clientConn, _ credentials) {
	c.writeLine("-ERR [SYS/TEMP] mailbox temporarily unavailable, try again later")
}

func (pop3Proto) rejected(c *clientConn, _ credentials, line string) {
	if strings.Contains(line, "[SYS/TEMP]") || strings.Contains(line, "[IN-USE]") {
		c.writeLine(line) // RFC 2449 §8.1.1 IN-USE: the mailbox is locked, said as it is
		return
	}
	c.writeLine("-ERR [AUTH] authentication failed")
}
