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
	n := int64(16 * (len(d.headers) + len(d.bodies)))
	for _, s := range d.headers {
		n += int64(len(s))
	}
	for _, s := range d.bodies {
		n += int64(len(s))
	}
	return n
}

// msgCache keeps what sessions decoded from messages (search text, envelopes) by user
// and maildir key, least recently used first out, within a byte budget. A maildir file's
// content never changes under its key (flag changes only rename it), so an entry can never
// be stale; expunged messages age out. It is split into shards by key hash so that 200
// sessions searching at once do not queue on one mutex.
type msgCache struct {
	shards [cacheShards]cacheShard
}

const cacheShards = 8

type cacheShard struct {
	mu    sync.Mutex
	max   int64
	used  int64
	ll    *list.List // of *cacheEntry, most recent at the front
	items map[string]*list.Element
}

type cacheEntry struct {
	key string
	v   any
	n   int64
}

func newMsgCache(max int64) *msgCache {
	c := &msgCache{}
	for i := range c.shards {
		c.shards[i] = cacheShard{max: max / cacheShards, ll: list.New(), items: map[string]*list.Element{}}
	}
	return c
}

// Cache keys: what was decoded, the user, the message's maildir key.
func textKey(user, msgKey string) string     { return "t\x00" + user + "\x00" + msgKey }
func envelopeKey(user, msgKey string) string { return "e\x00" + user + "\x00" + msgKey }

func (c *msgCache) shard(key string) *cacheShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &c.shards[h%cacheShards]
}

func (c *msgCache) get(key string) any {
	if c == nil {
		return nil
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.items[key]; ok {
		sh.ll.MoveToFront(el)
		return el.Value.(*cacheEntry).v
	}
	return nil
}

// put stores v, whose size is about n bytes.
func (c *msgCache) put(key string, v any, n int64) {
	if c == nil {
		return
	}
	sh := c.shard(key)
	n += int64(len(key)) + 64
	if n > sh.max/4 {
		return // one huge message would flush everything else
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if el, ok := sh.items[key]; ok {
		sh.ll.MoveToFront(el)
		return
	}
	sh.items[key] = sh.ll.PushFront(&cacheEntry{key: key, v: v, n: n})
	sh.used += n
	for sh.used > sh.max {
		el := sh.ll.Back()
		e := el.Value.(*cacheEntry)
		sh.ll.Remove(el)
		delete(sh.items, e.key)
		sh.used -= e.n
	}
}
