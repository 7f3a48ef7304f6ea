package imapd

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// envelope is what FETCH ENVELOPE answers (RFC 9051 §7.5.2): go-imap's imap.Envelope with
// imapd's own address, which keeps what imap.Address has no field for.
type envelope struct {
	Date                               time.Time
	Subject                            string
	From, Sender, ReplyTo, To, Cc, Bcc []address
	InReplyTo                          []string
	MessageID                          string
}

// address is an address of an ENVELOPE (RFC 9051 §7.5.2 "address"): a group's start
// marker has its name as Mailbox and no Host, its end marker neither.
type address struct {
	Name string `json:",omitempty"`
	// ADL is the obsolete source route (RFC 5322 §4.4 obs-route, "@a,@b" without the
	// colon), which RFC 3501 §7.4.2 answers as the address's at-domain-list.
	ADL     string `json:",omitempty"`
	Mailbox string `json:",omitempty"`
	Host    string `json:",omitempty"`
}

// missingDomain is the host of an address written without a domain ("From: d"): as
// Dovecot answers it, so that it is neither dropped nor read as a group's start marker.
const missingDomain = "MISSING_DOMAIN"

// extractEnvelope makes the ENVELOPE of a header (RFC 9051 §7.5.2). The date, subject
// (RFC 2047 words decoded) and message IDs are read by go-message's mail.Header, as
// go-imap's imapserver.ExtractEnvelope read them; the address lists are parsed as RFC
// 5322 has them (issue 16 item 4): net/mail's parser, which imapserver used, drops groups
// and their markers, obsolete source routes (<@route:user@domain>) and addresses with
// comments inside the addr-spec, and with them whole From, Sender and Reply-To fields.
func extractEnvelope(h textproto.Header) *envelope {
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	date, _ := mh.Date()
	subject, _ := mh.Subject()
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	return &envelope{
		Date:      date,
		Subject:   subject,
		From:      parseAddressList(h.Get("From")),
		Sender:    parseAddressList(h.Get("Sender")),
		ReplyTo:   parseAddressList(h.Get("Reply-To")),
		To:        parseAddressList(h.Get("To")),
		Cc:        parseAddressList(h.Get("Cc")),
		Bcc:       parseAddressList(h.Get("Bcc")),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
}

// envelopeOf converts go-imap's envelope (of a message/rfc822 part in a BODYSTRUCTURE).
func envelopeOf(env *imap.Envelope) *envelope {
	if env == nil {
		return nil
	}
	list := func(l []imap.Address) []address {
		if l == nil {
			return nil
		}
		out := make([]address, len(l))
		for i, a := range l {
			out[i] = address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return &envelope{
		Date: env.Date, Subject: env.Subject,
		From: list(env.From), Sender: list(env.Sender), ReplyTo: list(env.ReplyTo),
		To: list(env.To), Cc: list(env.Cc), Bcc: list(env.Bcc),
		InReplyTo: env.InReplyTo, MessageID: env.MessageID,
	}
}

// imap converts env to go-imap's envelope, without the source routes: for the envelope of
// a message/rfc822 part in a BODYSTRUCTURE.
func (env *envelope) imap() *imap.Envelope {
	if env == nil {
		return nil
	}
	list := func(l []address) []imap.Address {
		if l == nil {
			return nil
		}
		out := make([]imap.Address, len(l))
		for i, a := range l {
			out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return &imap.Envelope{
		Date: env.Date, Subject: env.Subject,
		From: list(env.From), Sender: list(env.Sender), ReplyTo: list(env.ReplyTo),
		To: list(env.To), Cc: list(env.Cc), Bcc: list(env.Bcc),
		InReplyTo: env.InReplyTo, MessageID: env.MessageID,
	}
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
// are left out, a source route is kept as the address's ADL; a comment after an addr-spec
// without a display name is the name (user@domain (Real Name)). An address without a
// domain gets missingDomain as its host (as Dovecot answers), one without a local part
// is left out, and so are the markers of a group without a name.
func parseAddressList(v string) []address {
	toks := lexAddressList(v)
	var out []address
	inGroup := false // within a group that has its start marker
	// bare adds words that are neither a display name nor followed by @: an address
	// without a domain ("To: d").
	bare := func(words []addrTok) {
		if local := spec(words); local != "" {
			out = append(out, address{Mailbox: local, Host: missingDomain})
		}
	}
	for i := 0; i < len(toks); {
		// The words before the first <, @, :, ; or ,: a display name, a group name or a
		// local part.
		start := i
		for i < len(toks) && !strings.ContainsRune("<@:;,", rune(toks[i].kind)) {
			i++
		}
		words := toks[start:i]
		if i == len(toks) {
			bare(words)
			break
		}
		switch toks[i].kind {
		case ':':
			if inGroup { // a group inside a group: end the first
				out = append(out, address{})
				inGroup = false
			}
			// A group without a name cannot be marked (its start would read as an
			// end): its members are listed as they are.
			if name := phrase(words); name != "" {
				out = append(out, address{Mailbox: name})
				inGroup = true
			}
			i++
		case ';':
			bare(words)
			if inGroup {
				out = append(out, address{})
				inGroup = false
			}
			i++
		case ',':
			bare(words)
			i++
		case '<':
			i++
			var adl string
			if i < len(toks) && toks[i].kind == '@' { // obs-route: @a,@b:
				rs := i
				for i < len(toks) && toks[i].kind != ':' && toks[i].kind != '>' {
					i++
				}
				if i < len(toks) && toks[i].kind == ':' {
					adl = spec(toks[rs:i])
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
			if domain == "" {
				domain = missingDomain
			}
			if local != "" {
				out = append(out, address{Name: phrase(words), ADL: adl, Mailbox: local, Host: domain})
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
			if domain == "" {
				domain = missingDomain
			}
			if local != "" {
				out = append(out, address{Name: name, Mailbox: local, Host: domain})
			}
		}
	}
	if inGroup {
		out = append(out, address{})
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
		case a.Host == missingDomain:
			b.WriteString("<" + a.Mailbox + ">")
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
