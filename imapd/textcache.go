package imapd

import (
	"container/list"
	"io"
	"strings"
	"sync"

	gomessage "github.com/emersion/go-message"
)

// textDoc is what SEARCH TEXT and BODY look at in one message, decoded once: the text of
// every header field of every entity the search visits and every text part's content
// (transfer encoding and charset undone), lower-cased. Matching a pattern is then a
// substring test per string, with exactly the results of walking the MIME tree again
// (TestTextDocMatchesWalk checks this against the walk on the corpus).
//
// Without it every SEARCH BODY opened, read and MIME-decoded every message of the
// mailbox: 21% of the server's CPU under bench/imap.sh.
type textDoc struct {
	headers []string // decoded header field values (TEXT only)
	bodies  []string // decoded text/* and message/* parts (TEXT and BODY)
}

// newTextDoc walks e as the search always did (RFC 3501 §6.4.4 TEXT/BODY: decoded text
// parts; multipart preambles and non-text parts are not searched; at most maxMIMEDepth
// levels; a broken multipart ends the walk).
func newTextDoc(e *gomessage.Entity) *textDoc {
	d := &textDoc{}
	d.walk(e, 0)
	return d
}

func (d *textDoc) walk(e *gomessage.Entity, depth int) {
	if depth > maxMIMEDepth {
		return
	}
	fields := e.Header.Fields()
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		d.headers = append(d.headers, strings.ToLower(v))
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return
			}
			d.walk(part, depth+1)
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return
	}
	b, err := io.ReadAll(e.Body)
	if err != nil && len(b) == 0 {
		return
	}
	d.bodies = append(d.bodies, strings.ToLower(string(b)))
}

// match reports whether pattern occurs, case-insensitively, in a body part or, with
// withHeader (SEARCH TEXT), in a header field.
func (d *textDoc) match(pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	p := strings.ToLower(pattern)
	if withHeader {
		for _, h := range d.headers {
			if strings.Contains(h, p) {
				return true
			}
		}
	}
	for _, b := range d.bodies {
		if strings.Contains(b, p) {
			return true
		}
	}
	return false
}

func (d *textDoc) size() int64 {
	n := int64(64 + 16*(len(d.headers)+len(d.bodies)))
	for _, s := range d.headers {
		n += int64(len(s))
	}
	for _, s := range d.bodies {
		n += int64(len(s))
	}
	return n
}

// textCache keeps textDocs by user and maildir key, least recently used first out, within
// a byte budget. A maildir file's content never changes under its key (flag changes only
// rename it), so an entry can never be stale; expunged messages age out.
type textCache struct {
	mu    sync.Mutex
	max   int64
	used  int64
	ll    *list.List // of *textEntry, most recent at the front
	items map[string]*list.Element
}

type textEntry struct {
	key string
	doc *textDoc
	n   int64
}

func newTextCache(max int64) *textCache {
	return &textCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func textKey(user, msgKey string) string { return user + "\x00" + msgKey }

func (c *textCache) get(key string) *textDoc {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*textEntry).doc
	}
	return nil
}

func (c *textCache) put(key string, d *textDoc) {
	if c == nil {
		return
	}
	n := d.size() + int64(len(key))
	if n > c.max/8 {
		return // one huge message would flush everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&textEntry{key: key, doc: d, n: n})
	c.used += n
	for c.used > c.max {
		el := c.ll.Back()
		e := el.Value.(*textEntry)
		c.ll.Remove(el)
		delete(c.items, e.key)
		c.used -= e.n
	}
}
