package spf

import (
	"fmt"
	"strings"
)

// ReceivedSPF returns the value of a Received-SPF header field for r (RFC 7208 §9.1):
// the result, a comment in the RFC's wording, and the key-value pairs client-ip,
// envelope-from, helo, receiver, identity, mechanism (when one matched) and problem (for
// errors). Values from the client are quoted or dropped so that the field cannot be
// broken by hostile input.
func (r Result) ReceivedSPF() string {
	var b strings.Builder
	b.WriteString(string(r.Status))
	b.WriteString(" (")
	b.WriteString(comment(r.Receiver))
	b.WriteString(": ")
	b.WriteString(comment(r.commentText()))
	b.WriteString(")")
	kv := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteString(" ")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(headerValue(v))
		b.WriteString(";")
	}
	if r.ClientIP.IsValid() {
		kv("client-ip", r.ClientIP.String())
	}
	if r.Identity == IdentityMailFrom {
		kv("envelope-from", r.Sender)
	}
	kv("helo", r.Helo)
	kv("receiver", r.Receiver)
	kv("identity", string(r.Identity))
	if r.Mechanism != "" && r.Mechanism != "default" {
		kv("mechanism", r.Mechanism)
	}
	if r.Status == PermError || r.Status == TempError {
		kv("problem", r.Problem)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// commentText is the human-readable part, in the wording of RFC 7208 §9.1's examples.
func (r Result) commentText() string {
	who := r.Sender
	if r.Identity == IdentityHelo {
		who = r.Helo
	}
	ip := r.ClientIP.String()
	switch r.Status {
	case Pass:
		return fmt.Sprintf("domain of %s designates %s as permitted sender", who, ip)
	case Fail:
		return fmt.Sprintf("domain of %s does not designate %s as permitted sender", who, ip)
	case SoftFail:
		return fmt.Sprintf("domain of transitioning %s does not designate %s as permitted sender", who, ip)
	case Neutral:
		return fmt.Sprintf("%s is neither permitted nor denied by domain of %s", ip, who)
	case None:
		return fmt.Sprintf("domain of %s does not provide an SPF record", who)
	case TempError:
		return fmt.Sprintf("error in processing during lookup of %s", who)
	default:
		return fmt.Sprintf("domain of %s has an invalid SPF record", who)
	}
}

// comment makes s safe inside a header comment: printable ASCII without parentheses or
// backslashes, at most 200 bytes.
func comment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 200; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '(' || c == ')' || c == '\\' {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// headerValue returns v as a dot-atom when it is one, else as a quoted-string (RFC 5322
// §3.2.4), with non-printable bytes replaced and the length bounded.
func headerValue(v string) string {
	if len(v) > 256 {
		v = v[:256]
	}
	atom := v != ""
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.:", c) >= 0) {
			atom = false
			break
		}
	}
	if atom {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
