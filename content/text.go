package content

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// addText converts a text part to UTF-8, reduces HTML to text, appends the result to the
// message text and collects its URLs.
func (w *walker) addText(p *Part, mt string, data []byte) {
	cs := ""
	for _, x := range p.Params {
		if x.Name == "charset" {
			cs = x.Value
			break
		}
	}
	var s string
	if isUTF8Label(cs) && utf8.Valid(data) {
		s = string(data)
	} else {
		var err error
		s, err = toUTF8(cs, data)
		if err != nil {
			w.malformed(p.Path, "unknown_charset")
		}
	}
	if mt == "text/html" {
		s = w.htmlText(s)
	}
	w.urls(s)
	w.msg.TextBytes += len(s)
	room := int(w.lim.MaxTextSize) - len(w.text)
	if room <= 0 {
		if len(s) > 0 {
			w.limit(p.Path, LimitTextSize)
		}
		return
	}
	if len(w.text) > 0 {
		w.text = append(w.text, '\n')
		room--
	}
	if len(s) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
		w.limit(p.Path, LimitTextSize)
	}
	w.text = append(w.text, s...)
}

// maxHTMLTokens bounds the work spent on one HTML part.
const maxHTMLTokens = 200000

// htmlText reduces HTML to its text: script and style contents are dropped, block
// elements become line breaks, entities are decoded; URLs in href, src and action
// attributes are collected.
func (w *walker) htmlText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	z.SetMaxBuf(1 << 20)
	var b strings.Builder
	b.Grow(len(s) / 2)
	skip := 0
	for i := 0; i < maxHTMLTokens; i++ {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String()
		case html.TextToken:
			if skip == 0 {
				b.Write(collapseSpace(z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			switch tag {
			case "script", "style", "head", "title":
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
			case "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr":
				b.WriteByte('\n')
			case "td", "th":
				b.WriteByte(' ')
			}
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				switch string(k) {
				case "href", "src", "action", "background":
					w.attrURL(strings.TrimSpace(string(v)))
				}
			}
		}
	}
	return b.String()
}

// collapseSpace turns runs of white space into one space.
func collapseSpace(t []byte) []byte {
	out := t[:0]
	space := false
	for _, c := range t {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' {
			if !space {
				out = append(out, ' ')
			}
			space = true
			continue
		}
		space = false
		out = append(out, c)
	}
	return out
}

// attrURL adds an absolute URL from an HTML attribute.
func (w *walker) attrURL(v string) {
	l := strings.ToLower(v)
	switch {
	case strings.HasPrefix(l, "http://"), strings.HasPrefix(l, "https://"), strings.HasPrefix(l, "ftp://"):
		w.addURL(v)
	case strings.HasPrefix(l, "//"):
		w.addURL("http:" + v)
	case strings.HasPrefix(l, "www."):
		w.addURL("http://" + v)
	}
}

// urls collects the URLs written in plain text: scheme://... for http, https and ftp,
// and bare www.example.com names.
func (w *walker) urls(s string) {
	pos := 0
	for {
		i := strings.Index(s[pos:], "://")
		if i < 0 {
			break
		}
		i += pos
		j := i
		for j > 0 && j > i-5 && isAlpha(s[j-1]) {
			j--
		}
		scheme := strings.ToLower(s[j:i])
		end := urlEnd(s, i+3)
		if (scheme == "http" || scheme == "https" || scheme == "ftp") && end > i+3 {
			w.addURL(s[j:end])
		}
		pos = end
		if pos <= i {
			pos = i + 3
		}
	}
	pos = 0
	for {
		i := strings.Index(s[pos:], "www.")
		if i < 0 {
			i = strings.Index(s[pos:], "WWW.")
			if i < 0 {
				break
			}
		}
		i += pos
		end := urlEnd(s, i)
		if i > 0 && (isAlpha(s[i-1]) || s[i-1] == '/' || s[i-1] == '.' || s[i-1] == '@' || s[i-1] >= '0' && s[i-1] <= '9') {
			pos = i + 4
			continue
		}
		if end > i+4 {
			w.addURL("http://" + s[i:end])
		}
		pos = end
		if pos <= i {
			pos = i + 4
		}
	}
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// urlEnd returns the end of a URL starting at i: white space, quotes and angle brackets
// end it; trailing punctuation is not part of it.
func urlEnd(s string, i int) int {
	j := i
	for j < len(s) && j-i < 2048 {
		c := s[j]
		if c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}' || c == '|' || c == '\\' || c == '^' || c == 0x7f {
			break
		}
		j++
	}
	for j > i && strings.IndexByte(".,;:!?)]*", s[j-1]) >= 0 {
		j--
	}
	return j
}

// addURL records a URL and its host once.
func (w *walker) addURL(u string) {
	if w.urlSet == nil {
		w.urlSet = make(map[string]struct{})
		w.hostSet = make(map[string]struct{})
	}
	if _, ok := w.urlSet[u]; ok {
		return
	}
	h := urlHost(u)
	if h == "" {
		return
	}
	if len(w.msg.URLs) >= w.lim.MaxURLs {
		w.limit("", LimitURLs)
		return
	}
	w.urlSet[u] = struct{}{}
	w.msg.URLs = append(w.msg.URLs, u)
	if _, ok := w.hostSet[h]; !ok {
		w.hostSet[h] = struct{}{}
		w.msg.URLHosts = append(w.msg.URLHosts, h)
	}
}

// urlHost returns the lower-case host of an absolute URL, without user info, port or
// trailing dot; "" when there is none.
func urlHost(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	rest := u[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		rest = rest[j+1:]
	}
	if strings.HasPrefix(rest, "[") {
		if j := strings.IndexByte(rest, ']'); j > 0 {
			return strings.ToLower(rest[1:j])
		}
		return ""
	}
	if j := strings.IndexByte(rest, ':'); j >= 0 {
		rest = rest[:j]
	}
	rest = strings.TrimRight(rest, ".")
	if rest == "" || !strings.Contains(rest, ".") {
		return ""
	}
	for k := 0; k < len(rest); k++ {
		c := rest[k]
		if c < 0x80 && !(isAlpha(c) || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '%') {
			return ""
		}
	}
	return strings.ToLower(rest)
}
