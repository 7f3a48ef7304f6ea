package sieve

import (
	"io"
	"mime"
	"strings"
)

// editheader (RFC 5293): addheader and deleteheader edit the header the rest of the
// script sees and Result.Header returns.

func init() {
	extensions["editheader"] = true
	commands["addheader"] = &cmdSpec{ext: "editheader", compile: compileAddheader}
	commands["deleteheader"] = &cmdSpec{ext: "editheader", compile: compileDeleteheader}
}

type headerEdit struct {
	fields  []field
	changed bool
	origLen int // bytes of the original header block with its empty line
}

func (h *headerEdit) values(name string) []string {
	var out []string
	for _, f := range h.fields {
		if equalFoldASCII(f.name, name) {
			out = append(out, f.value())
		}
	}
	return out
}

func (h *headerEdit) bytes() []byte {
	var b strings.Builder
	for _, f := range h.fields {
		b.WriteString(f.name)
		b.WriteByte(':')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(f.raw, "\r\n", "\n"), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// editable loads the header for editing on first use.
func (r *runner) editable() *headerEdit {
	if r.hdr == nil {
		raw, _ := io.ReadAll(io.LimitReader(r.msg.Raw(), int64(r.s.lim.MaxMatchInput)))
		hdr, body := splitMessage(raw)
		r.hdr = &headerEdit{fields: parseFields(hdr), origLen: int(crlfSize(raw[:len(raw)-len(body)]))}
	}
	return r.hdr
}

type addheaderCmd struct {
	pos         srcPos
	name, value *strExpr
	last        bool
}

func (x *addheaderCmd) exec(r *runner) error {
	r.currentPos = x.pos
	name, value := x.name.eval(r), x.value.eval(r)
	if !validFieldName(name) {
		return r.errorf(x.pos, "addheader: specified field name '%s' is invalid", name)
	}
	eo := r.s.opt.EditHeader
	if !eo.allowAdd(name) {
		return nil // a protected field is silently left alone (RFC 5293 §7)
	}
	if len(value) > eo.maxSize() {
		return r.errorf(x.pos, "addheader: value of '%s' exceeds %d bytes", name, eo.maxSize())
	}
	if strings.IndexByte(value, 0) >= 0 {
		return r.errorf(x.pos, "addheader: value of '%s' contains a NUL character", name)
	}
	h := r.editable()
	f := field{name: name, raw: " " + encodeHeaderValue(value)}
	if x.last {
		h.fields = append(h.fields, f)
	} else {
		h.fields = append([]field{f}, h.fields...)
	}
	h.changed = true
	return nil
}

// encodeHeaderValue folds line breaks and encodes non-ASCII text (RFC 5293 §5: the
// value is converted as needed to be a valid header field body).
func encodeHeaderValue(v string) string {
	v = strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", "\n"), "\r", "")
	v = strings.TrimRight(v, "\n")
	if strings.Contains(v, "\n") {
		// Fold at the line breaks: a continuation line starts with white space.
		var b strings.Builder
		for i, line := range strings.Split(v, "\n") {
			if i > 0 {
				b.WriteString("\r\n")
				if line == "" || (line[0] != ' ' && line[0] != '\t') {
					b.WriteByte(' ')
				}
			}
			b.WriteString(line)
		}
		v = b.String()
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return mime.QEncoding.Encode("utf-8", v)
		}
	}
	return v
}

func compileAddheader(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{{name: "last"}})
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString, aString) {
		return nil
	}
	x := &addheaderCmd{pos: n.pos, name: c.str(pa.pos[0].strs[0]), value: c.str(pa.pos[1].strs[0]), last: pa.has("last")}
	if x.name.constant() && !validFieldName(x.name.lit) {
		c.errf(pa.pos[0].pos, "addheader: specified field name '%s' is invalid", x.name.lit)
		return nil
	}
	if x.value.constant() && strings.IndexByte(x.value.lit, 0) >= 0 {
		c.errf(pa.pos[1].pos, "addheader: specified value '%s' is invalid (contains a NUL character)", x.value.lit)
		return nil
	}
	if x.value.constant() && len(x.value.lit) > c.opt.EditHeader.maxSize() {
		c.errf(pa.pos[1].pos, "addheader: value exceeds %d bytes", c.opt.EditHeader.maxSize())
		return nil
	}
	return x
}

type deleteheaderCmd struct {
	pos  srcPos
	name *strExpr
	m    *matcher // nil: delete every occurrence
	idx  fieldIndex
}

func (x *deleteheaderCmd) exec(r *runner) error {
	r.currentPos = x.pos
	name := x.name.eval(r)
	if !r.s.opt.EditHeader.allowDelete(name) || !validFieldName(name) {
		return nil
	}
	h := r.editable()
	total := 0
	for _, f := range h.fields {
		if equalFoldASCII(f.name, name) {
			total++
		}
	}
	out := h.fields[:0:0]
	seen := 0
	for _, f := range h.fields {
		if !equalFoldASCII(f.name, name) {
			out = append(out, f)
			continue
		}
		seen++
		if x.idx.n > 0 {
			want := x.idx.n
			if x.idx.last {
				want = total - x.idx.n + 1
			}
			if seen != want {
				out = append(out, f)
				continue
			}
		}
		if x.m != nil {
			ok, err := x.m.matchOne(r, decodeHeader(f.value()))
			if err != nil {
				return err
			}
			if !ok {
				out = append(out, f)
				continue
			}
		}
		h.changed = true
	}
	h.fields = out
	return nil
}

func compileDeleteheader(c *compiler, n *node) cmd {
	pa, ok := c.args(n, withMatch([]tagSpec{{name: "index", param: aNumber}, {name: "last"}}))
	if !ok || !c.noTests(n) {
		return nil
	}
	x := &deleteheaderCmd{pos: n.pos}
	switch len(pa.pos) {
	case 1:
		if !c.positional(n, pa, aString) {
			return nil
		}
		// A match type without value patterns is accepted and deletes every
		// occurrence (RFC 5293 §5; Pigeonhole accepts it too).
	case 2:
		if !c.positional(n, pa, aString, aStringList) {
			return nil
		}
		if x.m = c.matcher(n, pa, pa.pos[1]); x.m == nil {
			return nil
		}
		if x.m.mt == mCount {
			c.errf(n.pos, "deleteheader: :count is not allowed")
			return nil
		}
	default:
		c.errf(n.pos, "the deleteheader command expects a header name and optional value patterns")
		return nil
	}
	x.name = c.str(pa.pos[0].strs[0])
	if x.name.constant() && !validFieldName(x.name.lit) {
		c.errf(pa.pos[0].pos, "deleteheader: specified field name '%s' is invalid", x.name.lit)
		return nil
	}
	x.idx = c.fieldIndex(n, pa)
	return x
}
