package imapd

import (
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// extractEnvelope is imapserver.ExtractEnvelope with the address lists parsed as RFC 5322
// has them (issue 16 item 4): imapserver's parser (net/mail's) drops groups and their
// markers, obsolete source routes (<@route:user@domain>) and addresses with comments
// inside the addr-spec, and with them whole From, Sender and Reply-To fields.
func extractEnvelope(h textproto.Header) *imap.Envelope {
	env := imapserver.ExtractEnvelope(h)
	env.From = parseAddressList(h.Get("From"))
	env.Sender = parseAddressList(h.Get("Sender"))
	env.ReplyTo = parseAddressList(h.Get("Reply-To"))
	env.To = parseAddressList(h.Get("To"))
	env.Cc = parseAddressList(h.Get("Cc"))
	env.Bcc = parseAddressList(h.Get("Bcc"))
	return env
}

// addrTok is a lexical token of an address list: an atom ('a'), a quoted string ('q',
// unquoted), a comment ('c', without its parentheses) or one of the specials <>@:;,.
// as its own kind. sp says whitespace or a comment came before it.
type addrTok struct {
	kind byte
	s    string
	sp   bool
}

func lexAddressList(v string) []addrTok {
	var toks []addrTok
	sp := false
	for i := 0; i < len(v); {
		switch c := v[i]; c {
		case ' ', '\t', '\r', '\n':
			sp = true
			i++
		case '"':
			var b strings.Builder
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				if v[i] != '\r' && v[i] != '\n' {
					b.WriteByte(v[i])
				}
			}
			i++ // the closing quote (or past the end)
			toks = append(toks, addrTok{kind: 'q', s: b.String(), sp: sp})
			sp = false
		case '(':
			var b strings.Builder
			depth := 1
			for i++; i < len(v) && depth > 0; i++ {
				switch v[i] {
				case '\\':
					if i+1 < len(v) {
						i++
					}
				case '(':
					depth++
				case ')':
					depth--
					if depth == 0 {
						continue
					}
				}
				b.WriteByte(v[i])
			}
			toks = append(toks, addrTok{kind: 'c', s: b.String(), sp: sp})
			sp = true
		case '<', '>', '@', ':', ';', ',', '.':
			toks = append(toks, addrTok{kind: c, s: string(c), sp: sp})
			sp = false
			i++
		default:
			j := i
			if c == '[' { // a domain literal, kept whole
				for j < len(v) && v[j] != ']' {
					j++
				}
				if j < len(v) {
					j++
				}
			} else {
				for j < len(v) && !strings.ContainsRune(" \t\r\n\"()<>@:;,.[", rune(v[j])) {
					j++
				}
				if j == i { // a stray character such as ')' or ']'
					j++
				}
			}
			toks = append(toks, addrTok{kind: 'a', s: v[i:j], sp: sp})
			sp = false
			i = j
		}
	}
	return toks
}

var wordDecoder = mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	if gomessage.CharsetReader == nil {
		return nil, fmt.Errorf("unknown charset %q", charset)
	}
	return gomessage.CharsetReader(charset, r)
}}

// phrase joins words as they were spaced, for a display name or a group name, and
// undoes RFC 2047 encoded words.
func phrase(toks []addrTok) string {
	var b strings.Builder
	for _, t := range toks {
		if t.kind == 'c' {
			continue
		}
		if t.sp && b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.s)
	}
	s := b.String()
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// spec joins the words of a local part or domain, leaving out comments and whitespace.
func spec(toks []addrTok) string {
	var b strings.Builder
	for _, t := range toks {
		if t.kind != 'c' {
			b.WriteString(t.s)
		}
	}
	return b.String()
}

// parseAddressList parses an address list as RFC 3501 §7.4.2 wants it in an ENVELOPE:
// a group is a start marker (its name as the mailbox, no host), its members and an end
// marker (no mailbox, no host), an empty group just the two markers; comments anywhere
// are left out, a source route is dropped and its address kept; a comment after an
// addr-spec without a display name is the name (user@domain (Real Name)). An entry
// without a domain is left out, as it would read as a group marker, and so are the
// markers of a group without a name.
func parseAddressList(v string) []imap.Address {
	toks := lexAddressList(v)
	var out []imap.Address
	inGroup := false // within a group that has its start marker
	for i := 0; i < len(toks); {
		// The words before the first <, @, :, ; or ,: a display name, a group name or a
		// local part.
		start := i
		for i < len(toks) && !strings.ContainsRune("<@:;,", rune(toks[i].kind)) {
			i++
		}
		words := toks[start:i]
		if i == len(toks) {
			break
		}
		switch toks[i].kind {
		case ':':
			if inGroup { // a group inside a group: end the first
				out = append(out, imap.Address{})
				inGroup = false
			}
			// A group without a name cannot be marked (its start would read as an
			// end): its members are listed as they are.
			if name := phrase(words); name != "" {
				out = append(out, imap.Address{Mailbox: name})
				inGroup = true
			}
			i++
		case ';':
			if inGroup {
				out = append(out, imap.Address{})
				inGroup = false
			}
			i++
		case ',':
			i++
		case '<':
			i++
			if i < len(toks) && toks[i].kind == '@' { // obs-route: @a,@b:
				for i < len(toks) && toks[i].kind != ':' && toks[i].kind != '>' {
					i++
				}
				if i < len(toks) && toks[i].kind == ':' {
					i++
				}
			}
			ls := i
			for i < len(toks) && toks[i].kind != '@' && toks[i].kind != '>' {
				i++
			}
			local := spec(toks[ls:i])
			var domain string
			if i < len(toks) && toks[i].kind == '@' {
				i++
				ds := i
				for i < len(toks) && toks[i].kind != '>' {
					i++
				}
				domain = spec(toks[ds:i])
			}
			i++ // '>'
			if local != "" && domain != "" {
				out = append(out, imap.Address{Name: phrase(words), Mailbox: local, Host: domain})
			}
		case '@':
			i++
			ds := i
			for i < len(toks) && !strings.ContainsRune("<:;,", rune(toks[i].kind)) {
				i++
			}
			dtoks := toks[ds:i]
			name := ""
			for _, t := range dtoks {
				if t.kind == 'c' && strings.TrimSpace(t.s) != "" {
					name = t.s
				}
			}
			// Comments in the domain part are left out; one after the domain is the name.
			if last := len(dtoks) - 1; last >= 0 && dtoks[last].kind != 'c' {
				name = ""
			}
			if n, err := wordDecoder.DecodeHeader(strings.TrimSpace(name)); err == nil {
				name = n
			}
			local, domain := spec(words), spec(dtoks)
			if local != "" && domain != "" {
				out = append(out, imap.Address{Name: name, Mailbox: local, Host: domain})
			}
		}
	}
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

// addressText is what SEARCH FROM, TO, CC and BCC also look in, beside the field as it
// is: each address as "name <mailbox@host>" and each group's name, with comments, routes
// and folding gone, lower-cased, so that FROM user@domain finds
// <user (comment)@ (comment) domain> (issue 16 item 5).
func addressText(v string) string {
	var b strings.Builder
	for _, a := range parseAddressList(v) {
		if a.Name != "" {
			b.WriteString(a.Name)
			b.WriteByte(' ')
		}
		switch {
		case a.Host != "":
			b.WriteString("<" + a.Mailbox + "@" + a.Host + ">")
		case a.Mailbox != "":
			b.WriteString(a.Mailbox + ":")
		default:
			b.WriteByte(';')
		}
		b.WriteString("\n")
	}
	return strings.ToLower(b.String())
}
