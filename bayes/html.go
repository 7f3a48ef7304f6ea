package bayes

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// htmlReducer turns HTML into plain text for the tokenizer: tags are dropped (block
// tags become a space, inline tags nothing, so "V<b></b>iagra" still reads "Viagra"),
// script and style contents and comments are skipped, character references are
// decoded, and the URLs of href/src attributes are reported.
type htmlReducer struct {
	onURL func(u []byte)
}

// isBlockTag says whether a tag separates words (a switch: no hashing, unlike a map).
func isBlockTag(name []byte) bool {
	switch string(name) {
	case "br", "p", "div", "td", "th", "tr", "li", "table", "title", "h1", "h2", "h3", "h4",
		"h5", "h6", "option", "blockquote", "hr", "ul", "ol", "body", "head", "html", "center", "pre":
		return true
	}
	return false
}

// reduce appends the text of src to dst.
func (h *htmlReducer) reduce(dst, src []byte) []byte {
	var nameBuf [16]byte
	var noCommentEnd, noScriptEnd, noStyleEnd bool // no end of one after this point
	for i := 0; i < len(src); {
		c := src[i]
		switch c {
		case '<':
			// comment; one never closed ends at the next '>' instead (as "<!--#rotate>"
			// of spamware): malformed markup must not hide the rest of the message
			if bytes.HasPrefix(src[i:], []byte("<!--")) {
				if !noCommentEnd {
					if end := bytes.Index(src[i+4:], []byte("-->")); end >= 0 {
						i += 4 + end + 3
						continue
					}
					noCommentEnd = true
				}
				end := bytes.IndexByte(src[i+4:], '>')
				if end < 0 {
					return dst
				}
				i += 4 + end + 1
				continue
			}
			end := bytes.IndexByte(src[i+1:], '>')
			if end < 0 {
				// no tag can end any more: the rest is text (and scanning for '>'
				// again at every '<' would be quadratic)
				return append(dst, src[i:]...)
			}
			tag := src[i+1 : i+1+end]
			i += end + 2
			closing := len(tag) > 0 && tag[0] == '/'
			if closing {
				tag = tag[1:]
			}
			n := 0
			for n < len(tag) && isTagNameByte(tag[n]) {
				n++
			}
			if n == 0 {
				continue // <!DOCTYPE>, <?xml?>, garbage
			}
			name := lowerInto(nameBuf[:0], tag[:min(n, len(nameBuf))])
			if !closing && (string(name) == "script" || string(name) == "style") {
				// skip to the matching closing tag; without one, only the tag itself
				// is dropped, so that an unclosed <style> cannot hide the text (and
				// none is searched for again: that would be quadratic)
				open := &noScriptEnd
				if string(name) == "style" {
					open = &noStyleEnd
				}
				if !*open {
					if k := indexFold(src[i:], "</"+string(name)); k >= 0 {
						i += k
					} else {
						*open = true
					}
				}
				continue
			}
			if !closing && h.onURL != nil {
				h.attrURLs(tag[n:])
			}
			if isBlockTag(name) {
				dst = append(dst, ' ')
			}
		case '&':
			r, n := decodeEntity(src[i:])
			if n == 0 {
				dst = append(dst, c)
				i++
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		default:
			// copy the run of text up to the next markup byte in one append
			j := i + 1 + indexMarkup(src[i+1:])
			dst = append(dst, src[i:j]...)
			i = j
		}
	}
	return dst
}

// indexMarkup returns the index of the first '<' or '&' in b, or len(b), eight bytes
// at a time (SWAR: the lowest byte flagged by the zero-byte test is exact).
func indexMarkup(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		lt := x ^ '<'*ones
		amp := x ^ '&'*ones
		if m := ((lt-ones)&^lt | (amp-ones)&^amp) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '<' || b[i] == '&' {
			return i
		}
	}
	return i
}

func isTagNameByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

func lowerInto(dst, s []byte) []byte {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// indexFold is bytes.Index with ASCII case folding of b; needle must be lower case.
func indexFold(b []byte, needle string) int {
	if len(needle) == 0 {
		return 0
	}
	if c := needle[0]; c < 'a' || c > 'z' {
		// the first byte has no other case ('<' in every use here): jump from one
		// occurrence of it to the next (bytes.IndexByte)
		for i := 0; i+len(needle) <= len(b); i++ {
			k := bytes.IndexByte(b[i:len(b)-len(needle)+1], c)
			if k < 0 {
				return -1
			}
			i += k
			if equalFoldLower(b[i+1:i+len(needle)], needle[1:]) {
				return i
			}
		}
		return -1
	}
	for i := 0; i+len(needle) <= len(b); i++ {
		if equalFoldLower(b[i:i+len(needle)], needle) {
			return i
		}
	}
	return -1
}

// equalFoldLower reports whether b equals the lower-case lower with ASCII letters of b
// folded to lower case (len(b) == len(lower)).
func equalFoldLower(b []byte, lower string) bool {
	for j := 0; j < len(lower); j++ {
		c := b[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[j] {
			return false
		}
	}
	return true
}

// attrURLs reports the values of href, src, action and background attributes. Most
// attributes are not among them, so it jumps from '=' to '=' (bytes.IndexByte),
// taking the name before each and skipping the value after it.
func (h *htmlReducer) attrURLs(a []byte) {
	i, n := 0, len(a)
	for i < n {
		eq := bytes.IndexByte(a[i:], '=')
		if eq < 0 {
			return
		}
		eq += i
		// the name: the word before '=' (white space allowed between), without
		// leading slashes; only looked for when its last letter can be one of the
		// wanted names' (most attributes are face, size, color, width, ...)
		e := eq
		for e > i && isSpace(a[e-1]) {
			e--
		}
		var name []byte
		if e > i {
			switch a[e-1] | 0x20 {
			case 'f', 'c', 'n', 'd':
				s := e
				for s > i && !isSpace(a[s-1]) {
					s--
				}
				for s < e && a[s] == '/' {
					s++
				}
				name = a[s:e]
			}
		}
		// the value, quoted or up to white space
		j := eq + 1
		for j < n && isSpace(a[j]) {
			j++
		}
		var val []byte
		if j < n && (a[j] == '"' || a[j] == '\'') {
			q := a[j]
			k := bytes.IndexByte(a[j+1:], q)
			if k < 0 {
				val, j = a[j+1:], n
			} else {
				val, j = a[j+1:j+1+k], j+k+2
			}
		} else {
			vs := j
			for j < n && !isSpace(a[j]) {
				j++
			}
			val = a[vs:j]
		}
		i = j
		switch len(name) {
		case 3, 4, 6, 10:
			if len(val) > 0 && (bytes.EqualFold(name, []byte("href")) || bytes.EqualFold(name, []byte("src")) ||
				bytes.EqualFold(name, []byte("action")) || bytes.EqualFold(name, []byte("background"))) {
				h.onURL(val)
			}
		}
	}
}

var entities = map[string]rune{
	"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\'', "nbsp": ' ',
	"copy": '©', "reg": '®', "trade": '™', "euro": '€', "pound": '£', "cent": '¢',
	"eacute": 'é', "egrave": 'è', "agrave": 'à', "ccedil": 'ç', "uuml": 'ü', "ouml": 'ö',
	"auml": 'ä', "szlig": 'ß', "middot": '·', "bull": '•', "mdash": '—', "ndash": '–',
	"laquo": '«', "raquo": '»', "hellip": '…', "rsquo": '’', "lsquo": '‘', "rdquo": '”', "ldquo": '“',
}

// decodeEntity decodes a character reference at the start of b ("&amp;", "&#65;",
// "&#x41;"), returning the rune and the bytes consumed, or 0 consumed if there is none.
func decodeEntity(b []byte) (rune, int) {
	if len(b) < 3 {
		return 0, 0
	}
	semi := bytes.IndexByte(b[1:min(len(b), 12)], ';')
	if semi < 1 {
		return 0, 0
	}
	body := b[1 : 1+semi]
	n := semi + 2
	if body[0] == '#' {
		var v rune
		digits := body[1:]
		base := rune(10)
		if len(digits) > 0 && (digits[0] == 'x' || digits[0] == 'X') {
			base, digits = 16, digits[1:]
		}
		if len(digits) == 0 {
			return 0, 0
		}
		for _, c := range digits {
			d, ok := unhex(c)
			if !ok || rune(d) >= base {
				return 0, 0
			}
			v = v*base + rune(d)
			if v > utf8.MaxRune {
				return 0, 0
			}
		}
		if v == 0 || !utf8.ValidRune(v) {
			v = utf8.RuneError
		}
		return v, n
	}
	if r, ok := entities[string(body)]; ok {
		return r, n
	}
	return 0, 0
}
