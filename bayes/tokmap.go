package bayes

import "iter"

// tokenMap is the token table: open addressing with linear probing over 16-byte slots
// (hash, spam count, ham count), so a lookup costs about one cache miss, half the Go
// map's on a table much larger than the cache. Days live in a parallel array that only
// writes, stats and pruning read. Deletion shifts the following entries back, so there
// are no tombstones. Not safe for concurrent writes (the stores lock around it).
type tokenMap struct {
	slots []slot
	days  []uint16
	shift uint // 64 − log2(len(slots))
	n     int
	// key 0 marks an empty slot; a token whose hash is 0 is kept here
	zero    entry
	hasZero bool
}

type slot struct {
	key       uint64
	spam, ham uint32
}

func newTokenMap() *tokenMap {
	m := &tokenMap{}
	m.init(1024)
	return m
}

func (m *tokenMap) init(size int) {
	m.slots = make([]slot, size)
	m.days = make([]uint16, size)
	m.shift = 64
	for s := size; s > 1; s >>= 1 {
		m.shift--
	}
	m.n = 0
}

func (m *tokenMap) home(k uint64) int { return int((k * 0x9e3779b97f4a7c15) >> m.shift) }

func (m *tokenMap) len() int {
	if m.hasZero {
		return m.n + 1
	}
	return m.n
}

// counts returns the counts of k (zero if absent); the hot path of classification.
func (m *tokenMap) counts(k uint64) Counts {
	if k == 0 {
		return Counts{Spam: m.zero.spam, Ham: m.zero.ham}
	}
	mask := len(m.slots) - 1
	for i := m.home(k); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.key == k {
			return Counts{Spam: s.spam, Ham: s.ham}
		}
		if s.key == 0 {
			return Counts{}
		}
	}
}

func (m *tokenMap) get(k uint64) (entry, bool) {
	if k == 0 {
		return m.zero, m.hasZero
	}
	mask := len(m.slots) - 1
	for i := m.home(k); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.key == k {
			return entry{spam: s.spam, ham: s.ham, day: m.days[i]}, true
		}
		if s.key == 0 {
			return entry{}, false
		}
	}
}

func (m *tokenMap) set(k uint64, e entry) {
	if k == 0 {
		m.zero, m.hasZero = e, true
		return
	}
	if 2*(m.n+1) > len(m.slots) {
		m.grow()
	}
	mask := len(m.slots) - 1
	for i := m.home(k); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.key == k || s.key == 0 {
			if s.key == 0 {
				m.n++
			}
			*s = slot{key: k, spam: e.spam, ham: e.ham}
			m.days[i] = e.day
			return
		}
	}
}

func (m *tokenMap) grow() {
	old, oldDays := m.slots, m.days
	m.init(2 * len(old))
	for i, s := range old {
		if s.key != 0 {
			m.set(s.key, entry{spam: s.spam, ham: s.ham, day: oldDays[i]})
		}
	}
}

func (m *tokenMap) del(k uint64) {
	if k == 0 {
		m.zero, m.hasZero = entry{}, false
		return
	}
	mask := len(m.slots) - 1
	i := m.home(k)
	for ; ; i = (i + 1) & mask {
		if m.slots[i].key == k {
			break
		}
		if m.slots[i].key == 0 {
			return
		}
	}
	// backward-shift deletion: move later entries of the cluster into the hole when
	// their home position does not lie cyclically in (hole, their position]
	for j := (i + 1) & mask; m.slots[j].key != 0; j = (j + 1) & mask {
		h := m.home(m.slots[j].key)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			m.slots[i], m.days[i] = m.slots[j], m.days[j]
			i = j
		}
	}
	m.slots[i], m.days[i] = slot{}, 0
	m.n--
}

// all iterates over the entries; the map must not change meanwhile.
func (m *tokenMap) all() iter.Seq2[uint64, entry] {
	return func(yield func(uint64, entry) bool) {
		if m.hasZero && !yield(0, m.zero) {
			return
		}
		for i, s := range m.slots {
			if s.key != 0 && !yield(s.key, entry{spam: s.spam, ham: s.ham, day: m.days[i]}) {
				return
			}
		}
	}
}
