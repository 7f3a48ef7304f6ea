package imapd

import (
	"bufio"
	"bytes"
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/store"
)

// THREAD=ORDEREDSUBJECT (RFC 5256 §3).

// threadNode is one message of a thread, with its children in order.
type threadNode struct {
	num      uint32 // sequence number or UID
	children []*threadNode
}

// threadOrderedSubject answers THREAD ORDEREDSUBJECT: the matching messages grouped by
// base subject, each group's first message (by sent date) the parent of the others, the
// threads in the order of their first messages' sent dates; ties by sequence number.
func (s *session) threadOrderedSubject(kind numKind, criteria *imap.SearchCriteria) ([]*threadNode, error) {
	items, err := s.sortItems(criteria, true)
	if err != nil {
		return nil, err
	}
	byDate := func(a, b sortItem) int {
		if r := a.date.Compare(b.date); r != 0 {
			return r
		}
		return cmp.Compare(a.seq, b.seq)
	}
	slices.SortStableFunc(items, func(a, b sortItem) int {
		if r := strings.Compare(a.subject, b.subject); r != 0 {
			return r
		}
		return byDate(a, b)
	})
	num := func(it sortItem) uint32 {
		if kind == numUID {
			return it.uid
		}
		return it.seq
	}
	type thread struct {
		first sortItem
		node  *threadNode
	}
	var threads []thread
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].subject == items[i].subject {
			j++
		}
		root := &threadNode{num: num(items[i])}
		for _, it := range items[i+1 : j] {
			root.children = append(root.children, &threadNode{num: num(it)})
		}
		threads = append(threads, thread{items[i], root})
		i = j
	}
	slices.SortStableFunc(threads, func(a, b thread) int { return byDate(a.first, b.first) })
	out := make([]*threadNode, len(threads))
	for i, t := range threads {
		out[i] = t.node
	}
	return out, nil
}

// writeThreads writes the threads in THREAD's syntax (RFC 5256 §4): a chain of only
// children as "a b c", several children each in its own parentheses; num 0 is a dummy
// (a parent that is not a message).
func writeThreads(b *strings.Builder, roots []*threadNode) {
	for _, r := range roots {
		b.WriteByte('(')
		writeThread(b, r)
		b.WriteByte(')')
	}
}

func writeThread(b *strings.Builder, n *threadNode) {
	for {
		if n.num != 0 {
			b.WriteString(strconv.FormatUint(uint64(n.num), 10))
		}
		switch len(n.children) {
		case 0:
			return
		case 1:
			if n.num != 0 {
				b.WriteByte(' ')
			}
			n = n.children[0]
			continue
		}
		if n.num != 0 {
			b.WriteByte(' ')
		}
		writeThreads(b, n.children)
		return
	}
}

// THREAD=REFERENCES (RFC 5256 §2.2): threads from Message-ID, References and In-Reply-To.

// threadCtr is a container of the algorithm: a message, or a dummy (item nil) for a
// message referenced but not present.
type threadCtr struct {
	item     *sortItem
	parent   *threadCtr
	children []*threadCtr
}

func (c *threadCtr) isAncestorOf(d *threadCtr) bool {
	for p := d; p != nil; p = p.parent {
		if p == c {
			return true
		}
	}
	return false
}

func (c *threadCtr) unlink() {
	if p := c.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(x *threadCtr) bool { return x == c })
		c.parent = nil
	}
}

func (c *threadCtr) adopt(child *threadCtr) {
	child.unlink()
	child.parent = c
	c.children = append(c.children, child)
}

// first is the message that stands for a container: itself, or a dummy's first child's.
func (c *threadCtr) first() *sortItem {
	for c != nil && c.item == nil {
		if len(c.children) == 0 {
			return nil
		}
		c = c.children[0]
	}
	if c == nil {
		return nil
	}
	return c.item
}

// msgIDs returns the message ids (<...>) in a header field's value, without brackets.
func msgIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return ids
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ids
		}
		if id := strings.TrimSpace(v[i+1 : i+j]); id != "" {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
}

// threadReferences answers THREAD REFERENCES.
func (s *session) threadReferences(kind numKind, criteria *imap.SearchCriteria) ([]*threadNode, error) {
	items, err := s.sortItems(criteria, true)
	if err != nil {
		return nil, err
	}
	refsOf, idOf, err := s.threadHeaders(items)
	if err != nil {
		return nil, err
	}
	table := map[string]*threadCtr{}
	var all []*threadCtr // creation order, for a stable root set
	get := func(id string) *threadCtr {
		c := table[id]
		if c == nil {
			c = &threadCtr{}
			table[id] = c
			all = append(all, c)
		}
		return c
	}
	for i := range items {
		it := &items[i]
		id := idOf[i]
		if id == "" || (table[id] != nil && table[id].item != nil) {
			id = "\x00" + strconv.Itoa(i) // none, or a duplicate: a unique one
		}
		c := get(id)
		c.item = it
		// (1A) link the references in order, unless already linked or a loop.
		var prev *threadCtr
		for _, r := range refsOf[i] {
			rc := get(r)
			if prev != nil && rc.parent == nil && rc != prev && !rc.isAncestorOf(prev) {
				prev.adopt(rc)
			}
			prev = rc
		}
		// (1B) the message's parent is the last reference, unless that makes a loop.
		if prev != nil && (prev == c || c.isAncestorOf(prev)) {
			prev = nil
		}
		c.unlink()
		if prev != nil {
			prev.adopt(c)
		}
	}
	// (2) the root set, (4) without empty dummies; a dummy's children take its place,
	// except at the root where a dummy with several children stays.
	var prune func(list []*threadCtr, root bool) []*threadCtr
	prune = func(list []*threadCtr, root bool) []*threadCtr {
		var out []*threadCtr
		for _, c := range list {
			c.children = prune(c.children, false)
			if c.item == nil {
				if len(c.children) == 0 {
					continue
				}
				if !root || len(c.children) == 1 {
					for _, k := range c.children {
						k.parent = c.parent
					}
					out = append(out, c.children...)
					continue
				}
			}
			out = append(out, c)
		}
		return out
	}
	var roots []*threadCtr
	for _, c := range all {
		if c.parent == nil {
			roots = append(roots, c)
		}
	}
	roots = prune(roots, true)
	for _, r := range roots {
		r.parent = nil
	}
	sortCtrs(roots)
	// (5) group the roots by base subject.
	subjects := map[string]*threadCtr{}
	for _, r := range roots {
		f := r.first()
		if f == nil || f.subject == "" {
			continue
		}
		old := subjects[f.subject]
		switch {
		case old == nil,
			old.item != nil && r.item == nil,
			old.item != nil && old.item.reply && r.item != nil && !r.item.reply:
			subjects[f.subject] = r
		}
	}
	var merged []*threadCtr
	for _, r := range roots {
		f := r.first()
		if f == nil || f.subject == "" {
			merged = append(merged, r)
			continue
		}
		t := subjects[f.subject]
		switch {
		case t == r:
			merged = append(merged, r)
		case t.item == nil && r.item == nil:
			for _, k := range slices.Clone(r.children) {
				t.adopt(k)
			}
		case t.item == nil:
			t.adopt(r)
		case r.item == nil:
			r.adopt(t) // (the table prefers dummies; kept for completeness)
			subjects[f.subject] = r
			merged = slices.DeleteFunc(merged, func(x *threadCtr) bool { return x == t })
			merged = append(merged, r)
		case !t.item.reply && r.item.reply:
			t.adopt(r)
		default:
			d := &threadCtr{}
			i := slices.Index(merged, t)
			d.adopt(t)
			d.adopt(r)
			if i >= 0 {
				merged[i] = d
			} else {
				merged = append(merged, d)
			}
			subjects[f.subject] = d
		}
	}
	// (6) children by sent date everywhere, and the threads by their first message.
	sortCtrs(merged)
	num := func(it *sortItem) uint32 {
		if kind == numUID {
			return it.uid
		}
		return it.seq
	}
	var conv func(c *threadCtr) *threadNode
	conv = func(c *threadCtr) *threadNode {
		n := &threadNode{}
		if c.item != nil {
			n.num = num(c.item)
		}
		for _, k := range c.children {
			n.children = append(n.children, conv(k))
		}
		return n
	}
	out := make([]*threadNode, len(merged))
	for i, r := range merged {
		out[i] = conv(r)
	}
	return out, nil
}

// sortCtrs sorts containers and, first, their children, by sent date (a dummy by its
// first child's), ties by sequence number.
func sortCtrs(list []*threadCtr) {
	for _, c := range list {
		sortCtrs(c.children)
	}
	slices.SortStableFunc(list, func(a, b *threadCtr) int {
		fa, fb := a.first(), b.first()
		if fa == nil || fb == nil {
			return 0
		}
		if r := fa.date.Compare(fb.date); r != 0 {
			return r
		}
		return cmp.Compare(fa.seq, fb.seq)
	})
}

// threadHeaders reads the Message-ID and the references of each message: References,
// or, without a valid one, the first message id of In-Reply-To (RFC 5256 §2.2).
func (s *session) threadHeaders(items []sortItem) (refs [][]string, ids []string, err error) {
	sel, err := s.selected()
	if err != nil {
		return nil, nil, err
	}
	c, cancel := ctx()
	defer cancel()
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = it.uid
	}
	byUID := map[uint32]store.Message{}
	for start := 0; start < len(uids); start += 256 {
		msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, uids[start:min(start+256, len(uids))])
		if err != nil {
			return nil, nil, s.logErr("thread", err)
		}
		for _, m := range msgs {
			byUID[m.UID] = m
		}
	}
	refs, ids = make([][]string, len(items)), make([]string, len(items))
	for i, it := range items {
		m, ok := byUID[it.uid]
		if !ok {
			continue
		}
		hdr, err := s.readHeader(sel.mb, m, maxSearchHeader)
		if err != nil {
			continue // gone meanwhile: threaded without references
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		if err != nil {
			continue
		}
		if l := msgIDs(h.Get("Message-Id")); len(l) > 0 {
			ids[i] = l[0]
		}
		refs[i] = threadRefs(h.Get("References"), h.Get("In-Reply-To"))
	}
	return refs, ids, nil
}

// maxThreadRefs bounds the references of one message that THREAD REFERENCES links. The
// linking checks each new link against the chain above it (RFC 5256 §2.2 step 1A), so its
// cost grows with the square of a message's references: a sender's 1 MB References field
// (some 100,000 ids) would cost minutes of CPU on every THREAD. Real messages carry a few
// dozen (MUAs trim the field, RFC 5322 §3.6.4).
const maxThreadRefs = 256

// threadRefs is a message's references for threading: those of References, else the first
// of In-Reply-To (RFC 5256 §2.2); the last maxThreadRefs, the nearest ancestors.
func threadRefs(references, inReplyTo string) []string {
	refs := msgIDs(references)
	if len(refs) == 0 {
		if l := msgIDs(inReplyTo); len(l) > 0 {
			return l[:1]
		}
	}
	if len(refs) > maxThreadRefs {
		refs = refs[len(refs)-maxThreadRefs:]
	}
	return refs
}
