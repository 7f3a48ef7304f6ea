package imapd

import (
	"bufio"
	"io"
	"mime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// enc writes the parts of responses (RFC 9051 §9, response grammar) to the connection's
// buffer. It is used with wireConn.wmu held; a response ends with crlf, which flushes, so
// a client never waits for a response sitting in the buffer.
type enc struct {
	w     *bufio.Writer
	flush func() error // after each response: the buffer, and the compressor (COMPRESS)
	utf8  bool         // quoted strings and mailbox names may carry UTF-8 (IMAP4rev2, UTF8=ACCEPT)
	err   error
}

func (e *enc) raw(s string) *enc {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
	return e
}

func (e *enc) sp() *enc           { return e.raw(" ") }
func (e *enc) num(n uint32) *enc  { return e.raw(strconv.FormatUint(uint64(n), 10)) }
func (e *enc) num64(n int64) *enc { return e.raw(strconv.FormatInt(n, 10)) }

func (e *enc) crlf() error {
	e.raw("\r\n")
	if e.err == nil {
		e.err = e.flush()
	}
	return e.err
}

// quotable reports whether s can go as a quoted string (RFC 9051 §4.3: no CR, LF or NUL;
// 8-bit only as UTF-8 when the client accepts it); long strings go as literals.
func (e *enc) quotable(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0 || c == '\r' || c == '\n':
			return false
		case c >= 0x80 && !e.utf8:
			return false
		}
	}
	return !e.utf8 || utf8.ValidString(s)
}

// str writes s as a quoted string or, when it cannot be one, a literal.
func (e *enc) str(s string) *enc {
	if !e.quotable(s) {
		return e.raw("{").raw(strconv.Itoa(len(s))).raw("}\r\n").raw(s)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return e.raw(b.String())
}

// nstr writes s, or NIL when it is empty.
func (e *enc) nstr(s string) *enc {
	if s == "" {
		return e.raw("NIL")
	}
	return e.str(s)
}

// mailbox writes a mailbox name: modified UTF-7 for IMAP4rev1 clients (RFC 3501 §5.1.3),
// UTF-8 for those that enabled IMAP4rev2 or UTF8=ACCEPT (RFC 9051 §5.1).
func (e *enc) mailbox(name string) *enc {
	if strings.EqualFold(name, "INBOX") {
		return e.raw("INBOX")
	}
	if !e.utf8 {
		name = encodeMUTF7(name)
	}
	return e.str(name)
}

func (e *enc) flags(flags []imap.Flag) *enc {
	e.raw("(")
	for i, f := range flags {
		if i > 0 {
			e.sp()
		}
		e.raw(string(f))
	}
	return e.raw(")")
}

// numSet writes a set of numbers, ascending, as ranges.
func (e *enc) numSet(nums []uint32) *enc {
	sorted := append([]uint32(nil), nums...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] <= sorted[j]+1 {
			j++
		}
		if i > 0 {
			e.raw(",")
		}
		e.num(sorted[i])
		if sorted[j] != sorted[i] {
			e.raw(":").num(sorted[j])
		}
		i = j + 1
	}
	return e
}

// orderedSet writes numbers in their order, ascending runs as ranges (ESORT's ALL).
func (e *enc) orderedSet(nums []uint32) *enc {
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if i > 0 {
			e.raw(",")
		}
		e.num(nums[i])
		if j > i {
			e.raw(":").num(nums[j])
		}
		i = j + 1
	}
	return e
}

// status writes "TYPE [CODE] text" of a status response.
func (e *enc) status(typ string, code imap.ResponseCode, text string) *enc {
	e.raw(typ).sp()
	if code != "" {
		e.raw("[").raw(string(code)).raw("] ")
	}
	if text == "" {
		text = "done"
	}
	return e.raw(strings.NewReplacer("\r", " ", "\n", " ").Replace(text))
}

const envelopeDate = "Mon, 02 Jan 2006 15:04:05 -0700"

// envelope writes an ENVELOPE (RFC 9051 §7.5.2): Sender and Reply-To default to From;
// message ids get their angle brackets back; subject and names are encoded words when
// not ASCII (the envelope holds them decoded).
func (e *enc) envelope(env *envelope) *enc {
	if env == nil {
		env = &envelope{}
	}
	e.raw("(")
	if env.Date.IsZero() {
		e.raw("NIL")
	} else {
		e.str(env.Date.Format(envelopeDate))
	}
	e.sp().nstr(mime.QEncoding.Encode("utf-8", env.Subject))
	sender, replyTo := env.Sender, env.ReplyTo
	if sender == nil {
		sender = env.From
	}
	if replyTo == nil {
		replyTo = env.From
	}
	for _, l := range [][]address{env.From, sender, replyTo, env.To, env.Cc, env.Bcc} {
		e.sp().addresses(l)
	}
	e.sp()
	if len(env.InReplyTo) > 0 {
		e.str("<" + strings.Join(env.InReplyTo, "> <") + ">")
	} else {
		e.raw("NIL")
	}
	e.sp()
	if env.MessageID != "" {
		e.str("<" + env.MessageID + ">")
	} else {
		e.raw("NIL")
	}
	return e.raw(")")
}

// addresses writes an address list: name, adl (the source route), mailbox, host.
func (e *enc) addresses(l []address) *enc {
	if len(l) == 0 {
		return e.raw("NIL")
	}
	e.raw("(")
	for _, a := range l {
		e.raw("(").nstr(mime.QEncoding.Encode("utf-8", a.Name)).sp().nstr(a.ADL).sp().nstr(a.Mailbox).sp().nstr(a.Host).raw(")")
	}
	return e.raw(")")
}

// bodyStructure writes BODY (extended false) or BODYSTRUCTURE (RFC 9051 §7.5.2, body).
func (e *enc) bodyStructure(bs imap.BodyStructure, extended bool) *enc {
	e.raw("(")
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		e.str(bs.Type).sp().str(bs.Subtype).sp().params(bs.Params).sp().nstr(bs.ID).sp().nstr(bs.Description).sp()
		enc := strings.ToLower(bs.Encoding)
		if enc == "" {
			enc = "7bit"
		}
		e.str(enc).sp().num(bs.Size)
		switch {
		case bs.MessageRFC822 != nil:
			m := bs.MessageRFC822
			e.sp().envelope(envelopeOf(m.Envelope)).sp().bodyStructure(m.BodyStructure, extended).sp().num64(m.NumLines)
		case bs.Text != nil:
			e.sp().num64(bs.Text.NumLines)
		}
		if extended {
			ext := bs.Extended
			if ext == nil {
				ext = &imap.BodyStructureSinglePartExt{}
			}
			e.raw(" NIL ").disposition(ext.Disposition).sp().languages(ext.Language).sp().nstr(ext.Location)
		}
	case *imap.BodyStructureMultiPart:
		for _, c := range bs.Children {
			e.bodyStructure(c, extended) // no SP between parts (body-type-mpart)
		}
		e.sp().str(bs.Subtype)
		if extended {
			ext := bs.Extended
			if ext == nil {
				ext = &imap.BodyStructureMultiPartExt{}
			}
			e.sp().params(ext.Params).sp().disposition(ext.Disposition).sp().languages(ext.Language).sp().nstr(ext.Location)
		}
	}
	return e.raw(")")
}

func (e *enc) params(p map[string]string) *enc {
	if len(p) == 0 {
		return e.raw("NIL")
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.raw("(")
	for i, k := range keys {
		if i > 0 {
			e.sp()
		}
		e.str(k).sp().str(p[k])
	}
	return e.raw(")")
}

func (e *enc) disposition(d *imap.BodyStructureDisposition) *enc {
	if d == nil {
		return e.raw("NIL")
	}
	return e.raw("(").str(d.Value).sp().params(d.Params).raw(")")
}

func (e *enc) languages(l []string) *enc {
	if len(l) == 0 {
		return e.raw("NIL")
	}
	e.raw("(")
	for i, s := range l {
		if i > 0 {
			e.sp()
		}
		e.str(s)
	}
	return e.raw(")")
}

func (e *enc) dateTime(t time.Time) *enc {
	return e.str(t.Format("02-Jan-2006 15:04:05 -0700"))
}

// literalWriter counts a literal's bytes as they are written, so that a short one can be
// padded: the client counts them.
type literalWriter struct {
	e    *enc
	left int64
}

func (l *literalWriter) Write(b []byte) (int, error) {
	if l.e.err != nil {
		return 0, l.e.err
	}
	if int64(len(b)) > l.left {
		b = b[:l.left]
	}
	n, err := l.e.w.Write(b)
	l.left -= int64(n)
	if err != nil {
		l.e.err = err
	}
	return n, err
}

func (l *literalWriter) Close() error {
	for l.left > 0 && l.e.err == nil {
		pad := min(l.left, 512)
		l.Write([]byte(strings.Repeat(" ", int(pad))))
	}
	return l.e.err
}

var _ io.WriteCloser = (*literalWriter)(nil)

const mutf7b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

// encodeMUTF7 encodes a UTF-8 mailbox name in modified UTF-7 (RFC 3501 §5.1.3).
func encodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		units := utf16.Encode(run)
		buf := make([]byte, 0, 2*len(units))
		for _, u := range units {
			buf = append(buf, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		var bits, n uint32
		for _, c := range buf {
			bits = bits<<8 | uint32(c)
			n += 8
			for n >= 6 {
				n -= 6
				b.WriteByte(mutf7b64[(bits>>n)&63])
			}
		}
		if n > 0 {
			b.WriteByte(mutf7b64[(bits<<(6-n))&63])
		}
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}
