package sieve

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/charset"
)

// body (RFC 5173).

func init() {
	extensions["body"] = true
	tests["body"] = &testSpec{ext: "body", compile: compileBody}
}

type bodyTransform uint8

const (
	bodyText bodyTransform = iota
	bodyRaw
	bodyContent
)

type bodyTest struct {
	transform bodyTransform
	types     []*strExpr
	m         *matcher
}

type bodyPart struct {
	ctype   string // type/subtype, lowercase
	content string // decoded to UTF-8
}

// bodyCache is the body as the body tests see it, made once per run (or sequence):
// every body test of the run reads it, whatever the number of tests.
type bodyCache struct {
	raw   string
	parts []bodyPart
	text  []string // the :text values (text parts, HTML as words), made on first use
	texts bool     // text is made
}

// textValues are the values of body :text (RFC 5173 §5.1: the text parts).
func (bc *bodyCache) textValues() []string {
	if bc.texts {
		return bc.text
	}
	bc.texts = true
	for _, p := range bc.parts {
		if strings.HasPrefix(p.ctype, "text/") && p.content != "" {
			c := p.content
			if p.ctype == "text/html" {
				c = htmlText(c)
			}
			bc.text = append(bc.text, c)
		}
	}
	return bc.text
}

// rawBytes is implemented by the Message of NewMessage: its bytes, read without a copy.
type rawBytes interface{ bytes() []byte }

func (r *runner) bodyParts() *bodyCache {
	if r.body != nil {
		return r.body
	}
	limit := r.s.lim.MaxMatchInput
	var raw []byte
	if rb, ok := r.msg.(rawBytes); ok {
		raw = rb.bytes()
		raw = raw[:min(len(raw), limit*4)]
	} else {
		raw, _ = io.ReadAll(io.LimitReader(r.msg.Raw(), int64(limit)*4))
	}
	// One copy of the message as a string: the raw body and a single-part message's
	// text are pieces of it.
	str := string(raw)
	_, b := splitMessage(raw)
	off := len(raw) - len(b)
	bc := &bodyCache{raw: str[off : off+min(len(b), limit)]}
	walkParts(raw, str, 0, &bc.parts, limit)
	r.body = bc
	return bc
}

// walkParts splits a MIME entity into the parts the body test sees (RFC 5173 §5):
// a multipart's preamble and epilogue, a message/rfc822's raw content (and its own
// parts), and each leaf decoded to UTF-8. A part with an unknown transfer encoding is
// left out.
//
// es is entity as a string, or "" (then what is kept is copied from entity).
func walkParts(entity []byte, es string, depth int, out *[]bodyPart, limit int) {
	if depth > 20 || len(*out) > 256 {
		return
	}
	hdr, body := splitMessage(entity)
	var ctHeader, cte string
	for _, f := range parseFields(hdr) {
		switch {
		case equalFoldASCII(f.name, "content-type"):
			ctHeader = f.value()
		case equalFoldASCII(f.name, "content-transfer-encoding"):
			cte = strings.ToLower(f.value())
		}
	}
	ct, params := parseContentType(ctHeader)
	switch {
	case strings.HasPrefix(ct, "multipart/") && params["boundary"] != "":
		pre, parts, epi := splitMultipart(body, params["boundary"])
		// The prologue and the epilogue are separate strings (RFC 5173 §5.2).
		*out = append(*out, bodyPart{ctype: ct, content: pre})
		if strings.TrimSpace(epi) != "" {
			*out = append(*out, bodyPart{ctype: ct, content: epi})
		}
		for _, p := range parts {
			walkParts(p, "", depth+1, out, limit)
		}
		return
	case ct == "message/rfc822":
		// :content "message/rfc822" sees the nested message's header (RFC 5173 §5.2).
		nested, _ := splitMessage(body)
		*out = append(*out, bodyPart{ctype: ct, content: string(nested)})
		walkParts(body, "", depth+1, out, limit)
		return
	}
	var dec io.Reader = bytes.NewReader(body)
	switch cte {
	case "", "7bit", "8bit", "binary":
		if cs := params["charset"]; !strings.HasPrefix(ct, "text/") || cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") {
			// Nothing to decode: one copy, not a reader's growing buffer.
			content := ""
			if n := min(len(body), limit); es != "" {
				off := len(entity) - len(body)
				content = es[off : off+n]
			} else {
				content = string(body[:n])
			}
			*out = append(*out, bodyPart{ctype: ct, content: content})
			return
		}
	case "quoted-printable":
		dec = quotedprintable.NewReader(dec)
	case "base64":
		dec = base64.NewDecoder(base64.StdEncoding, &b64Clean{r: dec})
	default:
		return
	}
	if strings.HasPrefix(ct, "text/") {
		if cs := params["charset"]; cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
			if rd, err := charset.Reader(cs, dec); err == nil {
				dec = rd
			}
		}
	}
	content, _ := io.ReadAll(io.LimitReader(dec, int64(limit)))
	*out = append(*out, bodyPart{ctype: ct, content: string(content)})
}

// parseContentType reads a Content-Type field: text/plain when absent (RFC 2045 §5.2);
// with bad parameters, the type alone; a type that is no type/subtype is unknown (as
// in Pigeonhole, such a part is not text).
func parseContentType(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	if ct, params, err := mime.ParseMediaType(v); err == nil {
		return ct, params
	}
	t := strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
	if typ, sub, ok := strings.Cut(t, "/"); ok && typ != "" && sub != "" && !strings.ContainsAny(sub, "/ \t") {
		return t, map[string]string{}
	}
	return "application/x-unknown", map[string]string{}
}

// splitMultipart cuts a multipart body at its boundary lines (RFC 2046 §5.1.1).
func splitMultipart(body []byte, boundary string) (pre string, parts [][]byte, epi string) {
	delim := "--" + boundary
	s := string(body)
	var cur strings.Builder
	state := 0 // 0 preamble, 1 in a part, 2 epilogue
	flush := func() {
		p := cur.String()
		// The line break before a delimiter belongs to the delimiter.
		p = strings.TrimSuffix(strings.TrimSuffix(p, "\n"), "\r")
		parts = append(parts, []byte(p))
		cur.Reset()
	}
	for len(s) > 0 {
		nl := strings.IndexByte(s, '\n')
		line := s
		if nl >= 0 {
			line = s[:nl+1]
		}
		s = s[len(line):]
		t := strings.TrimRight(line, " \t\r\n")
		if state != 2 && strings.HasPrefix(t, delim) {
			rest := t[len(delim):]
			if rest == "--" {
				if state == 1 {
					flush()
				} else {
					pre = cur.String()
					cur.Reset()
				}
				state = 2
				continue
			}
			if rest == "" {
				if state == 1 {
					flush()
				} else {
					pre = cur.String()
					cur.Reset()
				}
				state = 1
				continue
			}
		}
		cur.WriteString(line)
	}
	switch state {
	case 0:
		pre = cur.String()
	case 1:
		flush()
	case 2:
		epi = cur.String()
	}
	return pre, parts, epi
}

// b64Clean drops what is not base64 (line breaks, white space) before decoding.
type b64Clean struct{ r io.Reader }

func (c *b64Clean) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, ch := range p[:n] {
		if isAlpha(ch) && ch != '_' || isDigit(ch) || ch == '+' || ch == '/' || ch == '=' {
			p[j] = ch
			j++
		}
	}
	return j, err
}

// contentMatches says whether a part's type matches a :content item (RFC 5173 §5.2):
// "" matches all, "type" matches its subtypes, "type/subtype" matches exactly.
func contentMatches(ctype, want string) bool {
	want = strings.ToLower(strings.TrimSpace(want))
	if want == "" {
		return true
	}
	if strings.Contains(want, "/") {
		return ctype == want
	}
	t, _, _ := strings.Cut(ctype, "/")
	return t == want
}

func (x *bodyTest) eval(r *runner) (bool, error) {
	bc := r.bodyParts()
	var vals []string
	switch x.transform {
	case bodyRaw:
		if bc.raw != "" {
			vals = []string{bc.raw}
		}
	case bodyText:
		vals = bc.textValues()
	case bodyContent:
		for _, p := range bc.parts {
			for _, t := range x.types {
				if contentMatches(p.ctype, t.eval(r)) {
					vals = append(vals, p.content)
					break
				}
			}
		}
	}
	return x.m.matchValues(r, vals)
}

// htmlText drops tags so :text sees the words of an HTML part.
func htmlText(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '<':
			in = true
		case s[i] == '>' && in:
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func compileBody(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch([]tagSpec{
		{name: "raw", group: "body transform"},
		{name: "text", group: "body transform"},
		{name: "content", param: aStringList, group: "body transform"},
	}))
	if !ok || !all(c.positional(n, pa, aStringList), c.noSubtests(n)) {
		return nil
	}
	x := &bodyTest{}
	switch {
	case pa.has("raw"):
		x.transform = bodyRaw
	case pa.has("content"):
		x.transform = bodyContent
		x.types = c.strList(pa.tags["content"])
	}
	if x.m = c.matcher(n, pa, pa.pos[0]); x.m == nil {
		return nil
	}
	// The body test sets no match variables (Pigeonhole: body content is too large
	// to be kept in them).
	x.m.capture = false
	return x
}
