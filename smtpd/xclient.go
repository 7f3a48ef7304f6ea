package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/internal/netlist"
	"github.com/portcullis-mail/portcullis/policy"
)

// XCLIENT (Postfix's XCLIENT_README) lets a trusted proxy in front of us (nginx's mail
// proxy, a Postfix front-end, a test harness) hand over the real client's address,
// names, HELO and login: the session then behaves as if that client had connected
// (rules, access maps, greylisting and limits see it), and answers the 220 greeting
// again. Only the listener's xclient_from networks may use it; others get 550 5.7.0,
// and only they see it announced in the EHLO reply. After XCLIENT, that is the client
// it named, as in Postfix: a second XCLIENT needs that client in xclient_from too.
//
// go-smtp dispatches the commands and has no hook for a new one, so XCLIENT is taken
// out of the byte stream beneath it (conn.Read): a line that starts with XCLIENT, read
// while go-smtp waits for a command (at a line boundary, outside a mail transaction, in
// plaintext), is answered here and never reaches go-smtp. Hence the limits of this
// implementation: XCLIENT is understood on the plaintext leg only (a proxy speaks it
// there; after STARTTLS it is an unknown command, 501), not inside a mail transaction
// (501 where Postfix answers 503), and not pipelined behind another command in one
// packet (the client waits for the 220 anyway, as XCLIENT_README asks). The connection
// rate limit is not counted again for the new client, as in Postfix.

// xclientAttrs are the attributes Postfix 3.7 knows, in the order it announces them.
var xclientAttrs = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "REVERSE_NAME", "LOGIN", "DESTADDR", "DESTPORT"}

// xclientEHLO is the EHLO keyword line announced to authorized clients.
var xclientEHLO = []byte("250-XCLIENT " + strings.Join(xclientAttrs, " ") + "\r\n")

// The special values of XCLIENT_README: the information is not available, or not
// available for now (a DNS lookup failed temporarily).
const (
	xclientUnavailable = "[UNAVAILABLE]"
	xclientTempUnavail = "[TEMPUNAVAIL]"
)

// xclientAttr is one NAME=value of an XCLIENT command, value decoded.
type xclientAttr struct {
	Name  string // upper case
	Value string // decoded xtext; "" when Unavailable or TempUnavail
	// Unavailable: the value was [UNAVAILABLE]; TempUnavail: [TEMPUNAVAIL].
	Unavailable, TempUnavail bool
}

// parseXCLIENT parses the arguments of an XCLIENT command (after "XCLIENT "): one or
// more name=value pairs, each value xtext-encoded (RFC 3461 §4). Unknown names and
// values that are not what the attribute holds are errors, as in Postfix.
func parseXCLIENT(args string) ([]xclientAttr, error) {
	fields := strings.Fields(args)
	if len(fields) == 0 {
		return nil, errXclientSyntax
	}
	if len(fields) > 2*len(xclientAttrs) {
		return nil, fmt.Errorf("%w: too many attributes", errXclientSyntax)
	}
	out := make([]xclientAttr, 0, len(fields))
	for _, f := range fields {
		name, raw, ok := strings.Cut(f, "=")
		name = strings.ToUpper(name)
		if !ok || !knownXclientAttr(name) {
			return nil, &xclientError{reply: policy.Reply{Code: 501, Enhanced: "5.5.4", Text: "Bad XCLIENT attribute name: " + printable(name)}}
		}
		v, err := xtextDecode(raw)
		if err != nil {
			return nil, &xclientError{reply: policy.Reply{Code: 501, Enhanced: "5.5.4", Text: "Bad " + name + " syntax in XCLIENT command"}}
		}
		a := xclientAttr{Name: name}
		switch v {
		case xclientUnavailable:
			a.Unavailable = true
		case xclientTempUnavail:
			a.TempUnavail = true
		default:
			if !validXclientValue(name, v) {
				return nil, &xclientError{reply: policy.Reply{Code: 501, Enhanced: "5.5.4", Text: "Bad XCLIENT " + name + " attribute value: " + printable(v)}}
			}
			a.Value = v
		}
		if a.TempUnavail && name != "NAME" && name != "REVERSE_NAME" {
			// XCLIENT_README: [TEMPUNAVAIL] is for the names, which come from DNS.
			return nil, &xclientError{reply: policy.Reply{Code: 501, Enhanced: "5.5.4", Text: "Bad XCLIENT " + name + " attribute value: " + xclientTempUnavail}}
		}
		out = append(out, a)
	}
	return out, nil
}

var errXclientSyntax = &xclientError{reply: policy.Reply{Code: 501, Enhanced: "5.5.4", Text: "Syntax: XCLIENT attribute=value..."}}

// xclientError is a refused XCLIENT command and its reply.
type xclientError struct{ reply policy.Reply }

func (e *xclientError) Error() string { return "smtpd: XCLIENT: " + e.reply.String() }

func knownXclientAttr(name string) bool {
	for _, a := range xclientAttrs {
		if a == name {
			return true
		}
	}
	return false
}

// validXclientValue checks a decoded value: an address, a port, a protocol name, or a
// printable word (names, HELO and login end up in logs, headers and rules; a decoded
// control character or space must not).
func validXclientValue(name, v string) bool {
	switch name {
	case "ADDR", "DESTADDR":
		_, err := parseXclientAddr(v)
		return err == nil
	case "PORT", "DESTPORT":
		n, err := strconv.Atoi(v)
		return err == nil && n >= 0 && n <= 65535 && len(v) <= 5
	case "PROTO":
		return strings.EqualFold(v, "SMTP") || strings.EqualFold(v, "ESMTP")
	case "NAME", "REVERSE_NAME":
		return validDomain(strings.ToLower(strings.TrimSuffix(v, ".")))
	}
	return printableHELO(v) && len(v) <= 255
}

// parseXclientAddr reads an ADDR value: IPv4, or IPv6 with Postfix's "IPV6:" prefix (a
// bare IPv6 address is accepted too).
func parseXclientAddr(v string) (netip.Addr, error) {
	if len(v) > 5 && strings.EqualFold(v[:5], "IPV6:") {
		a, err := netip.ParseAddr(v[5:])
		if err != nil || !a.Is6() {
			return netip.Addr{}, fmt.Errorf("smtpd: XCLIENT address %q: not IPv6", v)
		}
		return a, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("smtpd: XCLIENT address %q: %w", v, err)
	}
	return a.Unmap(), nil
}

// xtextDecode decodes RFC 3461 §4 xtext: printable ASCII but "+" and "=", and "+XX"
// for any byte (two hex digits; lower case accepted, as Postfix does).
func xtextDecode(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] < '!' || s[i] > '~' || s[i] == '=' {
				return "", errors.New("xtext: invalid character")
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", errors.New("xtext: truncated +XX")
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", errors.New("xtext: bad +XX")
			}
			b.WriteByte(byte(n))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", errors.New("xtext: invalid character")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// printable returns s with anything but printable ASCII replaced by '?', for replies.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// xclientState is a conn's XCLIENT interception (see the comment at the top).
type xclientState struct {
	// allowed: the client is in the listener's xclient_from; the peer at first, then
	// the client the last XCLIENT named (conn.Write reads it too).
	allowed   atomic.Bool
	lineStart bool   // what go-smtp has read so far ends a line
	held      []byte // bytes read and not yet handed to go-smtp
	// line is the start of the command line go-smtp is reading, and skip the bytes of
	// a BDAT chunk still to come: a chunk follows its BDAT even when go-smtp refuses
	// the command (no MAIL yet; RFC 3030 §2), and go-smtp discards it as data.
	line []byte
	skip uint64
}

// handed notes the bytes p handed to go-smtp: where its lines end, and the chunk of a
// BDAT command read outside a transaction. In a transaction go-smtp reads data, which
// XCLIENT is never taken from: only the line ends count there.
func (x *xclientState) handed(p []byte, inTxn bool) {
	if len(p) == 0 {
		return
	}
	if inTxn {
		x.line, x.skip = x.line[:0], 0
		x.lineStart = p[len(p)-1] == '\n'
		return
	}
	for len(p) > 0 {
		if x.skip > 0 {
			k := uint64(len(p))
			if k > x.skip {
				k = x.skip
			}
			p, x.skip = p[k:], x.skip-k
			x.lineStart = x.skip == 0 // the chunk's end: a command comes next
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			x.line = appendBounded(x.line, p)
			x.lineStart = false
			return
		}
		x.line = appendBounded(x.line, p[:i])
		x.skip = bdatSize(x.line)
		x.line, x.lineStart, p = x.line[:0], true, p[i+1:]
	}
}

// appendBounded appends p to line, keeping the first 32 bytes: enough for "BDAT size".
func appendBounded(line, p []byte) []byte {
	return append(line, p[:min(len(p), max(0, 32-len(line)))]...)
}

// bdatSize returns the chunk size of a BDAT command line (RFC 3030 §2), 0 for another.
func bdatSize(line []byte) uint64 {
	f := strings.Fields(string(line))
	if len(f) < 2 || len(f) > 3 || !strings.EqualFold(f[0], "BDAT") || len(f) == 3 && !strings.EqualFold(f[2], "LAST") {
		return 0 // go-smtp answers 501 and reads no chunk
	}
	n, err := strconv.ParseUint(f[1], 10, 32) // as go-smtp parses it
	if err != nil {
		return 0
	}
	return n
}

// xclientPrefix reports whether p starts like an XCLIENT command line: match when it
// does, more when p is too short to tell.
func xclientPrefix(p []byte) (match, more bool) {
	const kw = "XCLIENT"
	n := min(len(p), len(kw))
	if !bytes.EqualFold(p[:n], []byte(kw[:n])) {
		return false, false
	}
	if len(p) == len(kw) {
		return false, true
	}
	if len(p) < len(kw) {
		return false, true
	}
	c := p[len(kw)]
	return c == ' ' || c == '\r' || c == '\n', false
}

// readXclient is conn.Read when XCLIENT is understood on the connection.
func (c *conn) readXclient(b []byte) (int, error) {
	x := c.xc
	for {
		if len(x.held) > 0 {
			n := copy(b, x.held)
			x.held = x.held[n:]
			x.handed(b[:n], c.st.inTxn.Load())
			return n, nil
		}
		n, err := c.readRaw(b)
		if n == 0 || !c.xclientReady() {
			x.handed(b[:n], c.st.inTxn.Load())
			return n, err
		}
		match, more := xclientPrefix(b[:n])
		if !match && !more {
			x.handed(b[:n], c.st.inTxn.Load())
			return n, err
		}
		line := append([]byte(nil), b[:n]...)
		limit := int(c.st.srv.cfg.MaxLineSize)
		for bytes.IndexByte(line, '\n') < 0 && len(line) <= limit {
			if err != nil {
				return 0, err // the session is over (a timeout is sticky: see conn)
			}
			if match, more = xclientPrefix(line); !match && !more {
				break
			}
			var m int
			m, err = c.readRaw(b)
			line = append(line, b[:m]...)
		}
		i := bytes.IndexByte(line, '\n')
		if match, _ = xclientPrefix(line); !match || i < 0 {
			x.held = line // not XCLIENT, or a line too long: go-smtp's to answer
			continue
		}
		reply := c.st.xclient(strings.TrimRight(string(line[7:i]), "\r"))
		if _, werr := c.Write([]byte(reply + "\r\n")); werr != nil {
			return 0, werr
		}
		x.held = line[i+1:]
		x.line, x.skip, x.lineStart = x.line[:0], 0, true
		if err != nil && len(x.held) == 0 {
			return 0, err
		}
	}
}

// xclientReady reports whether go-smtp now waits for a command, so that a line read
// now is a command line: at a line boundary, in plaintext, outside a transaction.
func (c *conn) xclientReady() bool {
	if !c.xc.lineStart || c.xc.skip > 0 || c.tlsUp.Load() || c.st.inTxn.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dataEnd.IsZero()
}

// xclient runs one XCLIENT command (args after the keyword) and returns the reply.
func (st *connState) xclient(args string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.command(); err != nil {
		return replyLine(err)
	}
	if !st.nc.xc.allowed.Load() {
		st.srv.log.Warn("smtp XCLIENT refused: client not in xclient_from", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String())
		return replyLine(st.fail(policy.StageConnect, replyXclientRefused))
	}
	attrs, err := parseXCLIENT(args)
	if err != nil {
		var xe *xclientError
		errors.As(err, &xe)
		return replyLine(st.fail(policy.StageConnect, xe.reply))
	}
	pc := st.tx.Conn
	// The HELO name and the login are the new client's or none (Postfix's xclient_cmd
	// resets both unless given): the proxy's EHLO, or a login a previous XCLIENT gave
	// another client, must not carry over.
	pc.HELO, pc.AuthUser = "", ""
	for _, a := range attrs {
		switch a.Name {
		case "NAME":
			pc.Hostname, pc.DNSError = a.Value, a.TempUnavail
		case "REVERSE_NAME":
			pc.PTRNames = nil
			if a.Value != "" {
				pc.PTRNames = []string{a.Value}
			}
		case "ADDR":
			pc.IP, _ = parseXclientAddr(a.Value) // validated; zero when unavailable
		case "PORT":
			pc.Port, _ = strconv.Atoi(a.Value)
		case "HELO":
			pc.HELO = a.Value
		case "LOGIN":
			pc.AuthUser = a.Value
		case "DESTADDR":
			pc.LocalIP, _ = parseXclientAddr(a.Value)
		case "DESTPORT":
			pc.LocalPort, _ = strconv.Atoi(a.Value)
		}
	}
	if pc.Hostname != "" && !hasAttr(attrs, "REVERSE_NAME") {
		pc.PTRNames = []string{pc.Hostname} // a verified name is a reverse name too
	}
	pc.Trusted = pc.IP.IsValid() && netlist.Contains(st.srv.trusted, pc.IP)
	pc.Rate = policy.Rates{}
	// XCLIENT authorizes the client it names, not the proxy's session (Postfix's
	// xclient_cmd evaluates smtpd_authorized_xclient_hosts again): a proxy that relays
	// its client's commands after its own XCLIENT (nginx's mail proxy) must not let that
	// client send another, naming any address and login.
	st.nc.xc.allowed.Store(pc.IP.IsValid() && netlist.Contains(st.l.xclient, pc.IP))
	st.srv.log.Info("smtp XCLIENT", "id", pc.ID, "proxy_ip", st.tx.Conn.IP.String(), "client_ip", pc.IP.String(),
		"client_name", pc.Hostname, "helo", pc.HELO, "login", pc.AuthUser)
	st.restart(pc)
	return "220 " + st.srv.cfg.Hostname + " ESMTP Service Ready"
}

var replyXclientRefused = policy.Reply{Code: 550, Enhanced: "5.7.0", Text: "Error: insufficient authorization"}

// replyLine formats the reply go-smtp would have written for err.
func replyLine(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.EnhancedCode == (smtp.EnhancedCode{}) {
			return fmt.Sprintf("%d %s", se.Code, se.Message)
		}
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	return "451 4.3.0 " + printable(err.Error())
}

func hasAttr(attrs []xclientAttr, name string) bool {
	for _, a := range attrs {
		if a.Name == name {
			return true
		}
	}
	return false
}

// restart begins the session again for the client pc, as admit does for a new
// connection: the decision log's connection record, the connect stage, the milters,
// and the helo stage when XCLIENT gave a HELO name. A refusal waits for the next
// command that can answer it (RCPT with delay_reject, else MAIL), as for a re-EHLO.
func (st *connState) restart(pc policy.Conn) {
	st.resetTxn()
	st.closeMilters()
	st.milters = nil
	if f := st.disconnected.Swap(nil); f != nil {
		(*f)()
	}
	helo := pc.HELO
	pc.HELO = ""
	st.tx = policy.NewTransaction(pc)
	st.tx.Hostname = st.srv.cfg.Hostname
	if obs, ok := st.srv.deps.Decisions.(ConnectionObserver); ok {
		seen := st.tx.Conn
		obs.Connected(&seen)
		f := func() { obs.Disconnected(&seen) }
		st.disconnected.Store(&f)
	}
	st.pending, st.connectDec, st.heloDec = nil, policy.Decision{}, policy.Decision{}
	d := st.evaluate(policy.StageConnect)
	st.connectDec = d
	if d.Terminal() {
		st.pending, st.pendingStage = &d, policy.StageConnect
	} else if len(st.srv.deps.Milters) > 0 {
		if md := st.openMilters(); md.Terminal() {
			st.pending, st.pendingStage = &md, policy.StageConnect
		}
	}
	if helo != "" {
		_ = st.helo(helo, false)
	}
}
