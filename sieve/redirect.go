package sieve

import (
	"errors"
	"fmt"
	"strings"
)

// Sending a redirect (RFC 5228 §4.2) the way Pigeonhole does: the envelope sender its
// sieve_redirect_envelope_from setting chooses, X-Sieve-Redirected-From naming the user,
// and a message that already carries that field for the user is not sent again.

// RedirectOptions are the administrator's settings for sending redirects; the zero value
// is Pigeonhole's default.
type RedirectOptions struct {
	// EnvelopeFrom chooses the envelope sender of the redirected message (Pigeonhole's
	// sieve_redirect_envelope_from): "sender" or "" (the original envelope sender, RFC
	// 5228 §4.2), "recipient" (the final recipient), "orig_recipient" (the original
	// recipient, else the final one), "user_email" (UserEmail, else the final
	// recipient), or an explicit "<address>" or "<>". A message from the null sender is
	// always redirected from the null sender: a bounce must not cause another bounce
	// (RFC 5321 §4.5.5).
	EnvelopeFrom string
	// UserEmail is the user's own address (sieve_user_email); "" means Envelope.To. It
	// is what X-Sieve-Redirected-From says; loop detection looks for it and for
	// Envelope.To.
	UserEmail string
	// MaxHops refuses a message that already went through this many Sieve redirects
	// (X-Sieve-Redirected-From fields, whoever added them); default 4.
	MaxHops int
}

// DefaultMaxRedirectHops is RedirectOptions.MaxHops's default.
const DefaultMaxRedirectHops = 4

// ErrRedirectLoop is returned by Redirect.Compose when sending would loop; the
// message is to be kept instead (nothing lost).
var ErrRedirectLoop = errors.New("sieve: redirect loop")

// redirectedFrom is the field that marks a message a Sieve redirect sent (Pigeonhole's);
// editheader never adds or deletes it.
const redirectedFrom = "X-Sieve-Redirected-From"

// Compose returns the envelope sender and the message to send for the redirect: raw
// (the message as delivered, without the delivery's own Return-Path) with the header
// editheader left (x.Header), any Return-Path removed (RFC 5321 §4.4: only the final
// delivery adds it) and "X-Sieve-Redirected-From: <user>" added on top. env is the run's
// envelope. It returns ErrRedirectLoop (wrapped) when the message already names the user
// in X-Sieve-Redirected-From, or carries opt.MaxHops of them.
func (x *Redirect) Compose(raw []byte, env Envelope, opt RedirectOptions) (from string, msg []byte, err error) {
	if strings.ContainsAny(x.Address, "\r\n") {
		return "", nil, fmt.Errorf("sieve: redirect to %q: the address contains a line break", x.Address)
	}
	user := strings.TrimSpace(opt.UserEmail)
	if user == "" {
		user = env.To
	}
	user = strings.NewReplacer("\r", "", "\n", "").Replace(user)
	hdr, body := splitMessage(raw)
	if x.Header != nil {
		hdr, _ = splitMessage(x.Header)
	}
	fields := parseFields(hdr)
	hops := 0
	for _, f := range fields {
		if !equalFoldASCII(f.name, redirectedFrom) {
			continue
		}
		hops++
		v := strings.Trim(f.value(), "<>")
		if l, ok := parseAddressList(f.value()); ok && len(l) == 1 && l[0].local != "" {
			v = l[0].all()
		}
		// The user's address or the final recipient (Pigeonhole checks both).
		if strings.EqualFold(v, user) || (env.To != "" && strings.EqualFold(v, env.To)) {
			return "", nil, fmt.Errorf("%w: the message was already redirected by %s", ErrRedirectLoop, v)
		}
	}
	maxHops := opt.MaxHops
	if maxHops <= 0 {
		maxHops = DefaultMaxRedirectHops
	}
	if hops >= maxHops {
		return "", nil, fmt.Errorf("%w: %d Sieve redirects already", ErrRedirectLoop, hops)
	}
	var b strings.Builder
	b.Grow(len(hdr) + len(body) + len(user) + 32)
	b.WriteString(redirectedFrom + ": " + user + "\r\n")
	// Copy the header field by field, as it is, but for Return-Path.
	rest := string(hdr)
	for rest != "" {
		end := 0
		for {
			nl := strings.IndexByte(rest[end:], '\n')
			if nl < 0 {
				end = len(rest)
				break
			}
			end += nl + 1
			if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
				break
			}
		}
		line := rest[:end]
		rest = rest[end:]
		name, _, _ := strings.Cut(line, ":")
		if equalFoldASCII(strings.TrimRight(name, " \t"), "return-path") {
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	return redirectSender(env, opt, user), []byte(b.String()), nil
}

// Validate reports an EnvelopeFrom that is none of the values it may take (an
// administrator's typo must not silently send from the original sender).
func (o RedirectOptions) Validate() error {
	switch v := strings.ToLower(strings.TrimSpace(o.EnvelopeFrom)); {
	case v == "", v == "sender", v == "recipient", v == "orig_recipient", v == "user_email", v == "<>":
		return nil
	case strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">"):
		if l, ok := parseAddressList(v); ok && len(l) == 1 && l[0].hasDomain && !strings.ContainsAny(v, "\r\n") {
			return nil
		}
	}
	return fmt.Errorf("sieve: redirect envelope sender %q: want sender, recipient, orig_recipient, user_email, <address> or <>", o.EnvelopeFrom)
}

// redirectSender is the envelope sender sieve_redirect_envelope_from chooses.
func redirectSender(env Envelope, opt RedirectOptions, user string) string {
	if env.From == "" {
		return ""
	}
	switch v := strings.ToLower(strings.TrimSpace(opt.EnvelopeFrom)); {
	case v == "" || v == "sender":
		return env.From
	case v == "recipient":
		return env.To
	case v == "orig_recipient":
		if env.OrigTo != "" {
			return env.OrigTo
		}
		return env.To
	case v == "user_email":
		return user
	case strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">"):
		return strings.TrimSpace(strings.TrimSpace(opt.EnvelopeFrom)[1 : len(v)-1])
	default:
		return env.From
	}
}
