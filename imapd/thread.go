package imapd

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
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
func (s *session) threadOrderedSubject(kind imapserver.NumKind, criteria *imap.SearchCriteria) ([]*threadNode, error) {
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
		if kind == imapserver.NumKindUID {
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
