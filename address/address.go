// Package address holds what portcullis knows about mail addresses, in one place: the
// envelope Address of MAIL FROM and RCPT TO, splitting local@domain at the last '@',
// the canonical form under which users are stored (Normalize), and the address
// extension ("user+tag", Postfix's recipient_delimiter). The SMTP server, the rule
// engine, the user database and the routing maps all import it; it imports nothing of
// portcullis.
package address

import "strings"

// Address is an envelope address as parsed from MAIL FROM or RCPT TO.
type Address struct {
	Raw    string // as given, without angle brackets; "" for the null sender <>
	Local  string // local part (quotes removed)
	Domain string // domain, lower case, without a trailing dot
}

// IsNull reports whether a is the null reverse-path <> (RFC 5321 §4.5.5).
func (a Address) IsNull() bool { return a.Raw == "" }

// String returns the address as local@domain.
func (a Address) String() string {
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Parse splits an envelope address, with or without angle brackets. It does not
// validate: the SMTP server rejects malformed addresses before anything else sees them.
// A quoted local part is unquoted (RFC 5321 §4.1.2 Quoted-string).
func Parse(s string) Address {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"))
	a := Address{Raw: s}
	if s == "" {
		return a
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		a.Local = unquote(s)
		return a
	}
	a.Local = unquote(s[:at])
	a.Domain = foldDomain(s[at+1:])
	return a
}

// Split returns the local part and the domain of addr, split at the last '@' (a quoted
// local part may contain '@'; a domain never does). The domain is lower-cased and loses
// a trailing dot; the local part is returned as it is. ok is false when addr has no '@'
// or either side is empty; local is then addr.
func Split(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return addr, "", false
	}
	return addr[:at], foldDomain(addr[at+1:]), true
}

// Domain returns the domain of addr (lower case, no trailing dot), or "" when addr has no
// '@'.
func Domain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return foldDomain(addr[at+1:])
}

// StripExtension removes the address extension from a local part: the first of the
// delimiter characters and all that follows ("user+tag" → "user"). delimiters is a set of
// characters, as Postfix's recipient_delimiter (since 2.11): with "+-" both "user+tag"
// and "user-tag" are "user". A delimiter at the start is not an extension ("+tag" stays),
// and an empty set strips nothing.
func StripExtension(local, delimiters string) string {
	if delimiters == "" {
		return local
	}
	if i := strings.IndexAny(local, delimiters); i > 0 {
		return local[:i]
	}
	return local
}

func foldDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

func unquote(local string) string {
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		var b strings.Builder
		in := local[1 : len(local)-1]
		for i := 0; i < len(in); i++ {
			if in[i] == '\\' && i+1 < len(in) {
				i++
			}
			b.WriteByte(in[i])
		}
		return b.String()
	}
	return local
}
