package sieve

import (
	"bytes"
	"io"
	"mime"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charset decoding of text parts
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

type bodyCache struct {
	raw   string
	parts []bodyPart
}

func (r *runner) bodyParts() *bodyCache {
	if r.body != nil {
		return r.body
	}
	limit := int64(r.s.lim.MaxMatchInput)
	raw, _ := io.ReadAll(io.LimitReader(r.msg.Raw(), limit*4))
	_, b := splitMessage(raw)
	bc := &bodyCache{raw: string(b)}
	if len(bc.raw) > int(limit) {
		bc.raw = bc.raw[:limit]
	}
	if e, err := gomessage.Read(bytes.NewReader(raw)); err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err) {
		walkParts(e, 0, &bc.parts, limit)
	} else {
		bc.parts = []bodyPart{{ctype: "text/plain", content: bc.raw}}
	}
	r.body = bc
	return bc
}

func walkParts(e *gomessage.Entity, depth int, out *[]bodyPart, limit int64) {
	if e == nil || depth > 20 || len(*out) > 256 {
		return
	}
	ct, _, err := e.Header.ContentType()
	if err != nil || ct == "" {
		ct = "text/plain"
	}
	ct = strings.ToLower(ct)
	if mr := e.MultipartReader(); mr != nil {
		*out = append(*out, bodyPart{ctype: ct})
		for {
			p, err := mr.NextPart()
			if err != nil {
				if p == nil {
					return
				}
			}
			walkParts(p, depth+1, out, limit)
		}
	}
	if ct == "message/rfc822" {
		*out = append(*out, bodyPart{ctype: ct})
		if inner, err := gomessage.Read(e.Body); err == nil || gomessage.IsUnknownCharset(err) {
			walkParts(inner, depth+1, out, limit)
		}
		return
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, limit))
	*out = append(*out, bodyPart{ctype: ct, content: string(b)})
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
		vals = []string{bc.raw}
	case bodyText:
		for _, p := range bc.parts {
			if strings.HasPrefix(p.ctype, "text/") {
				c := p.content
				if p.ctype == "text/html" {
					c = htmlText(c)
				}
				vals = append(vals, c)
			}
		}
	case bodyContent:
		for _, p := range bc.parts {
			if strings.HasPrefix(p.ctype, "multipart/") || p.ctype == "message/rfc822" {
				continue
			}
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
	if !ok || !c.positional(n, pa, aStringList) || !c.noSubtests(n) {
		return nil
	}
	x := &bodyTest{}
	switch {
	case pa.has("raw"):
		x.transform = bodyRaw
	case pa.has("content"):
		x.transform = bodyContent
		x.types = c.strList(pa.tags["content"])
		for _, t := range x.types {
			if t.constant() && t.lit != "" {
				if _, _, err := mime.ParseMediaType(t.lit + map[bool]string{true: "", false: "/x"}[strings.Contains(t.lit, "/")]); err != nil {
					c.errf(t.pos, "invalid content type '%s'", t.lit)
					return nil
				}
			}
		}
	}
	if x.m = c.matcher(n, pa, pa.pos[0]); x.m == nil {
		return nil
	}
	return x
}
