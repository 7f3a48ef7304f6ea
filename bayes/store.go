package bayes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Class is what a message is trained as.
type Class int8

const (
	Ham  Class = 1
	Spam Class = 2
)

func (c Class) String() string {
	switch c {
	case Ham:
		return "ham"
	case Spam:
		return "spam"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ParseClass parses "spam" or "ham".
func ParseClass(s string) (Class, error) {
	switch s {
	case "spam":
		return Spam, nil
	case "ham":
		return Ham, nil
	}
	return 0, fmt.Errorf("unknown class %q (want spam or ham)", s)
}

// Counts is the number of trained spam and ham messages that contained a token.
type Counts struct {
	Spam, Ham uint32
}

// Totals is the number of trained spam and ham messages.
type Totals struct {
	Spam, Ham uint32
}

// Update is one message to train or untrain.
type Update struct {
	Class Class // the class to train; ignored by untrain of a tracked message
	// Untrain reverses an earlier training of the same message exactly.
	Untrain bool
	// Digest identifies the message so that training twice is a no-op, training as
	// the other class moves it, and untraining knows its class. 0: not tracked.
	Digest uint64
	Tokens []uint64 // distinct token hashes
	// Header says how many of the first Tokens come from the header fields
	// (Tokenizer.HashesHeader), for scoring the message (Reinforce); not stored.
	Header int
	Day    uint16 // days since 1970-01-01 (for aging); 0 means today
	// Reinforce trains a message already trained as Class once more (train until no
	// error, Classifier.Reinforce): its tokens and the class total count again. The
	// store remembers how often, so that untraining or moving it reverses every count.
	// A message not yet trained (or trained as the other class) is trained normally.
	Reinforce bool
}

// Outcome says what Apply did with one Update.
type Outcome int8

const (
	Applied        Outcome = iota // counts changed
	AlreadyTrained                // the message was already trained as this class
	Relearned                     // the message moved from the other class
	NotTrained                    // untrain of a message that was never trained
	Reinforced                    // a trained message counted once more
)

func (o Outcome) String() string {
	return [...]string{"applied", "already-trained", "relearned", "not-trained", "reinforced"}[o]
}

// trained records a tracked message: its class in the low 8 bits, and above them how
// many times it was reinforced (the SQLite seen table stores this integer as is, so
// rows from before reinforcement read as reinforced 0 times).
type trained uint32

func (t trained) class() Class { return Class(t & 0xff) }
func (t trained) times() int32 { return int32(t>>8) + 1 }

// maxReinforce bounds the reinforcements of one message.
const maxReinforce = 1000

// Stats describes a store.
type Stats struct {
	Totals    Totals
	Tokens    int // distinct tokens
	Hapaxes   int // tokens seen in exactly one message
	Messages  int // tracked (digested) messages
	OldestDay uint16
}

// PruneConfig says which tokens Prune removes: those seen in at most MinCount
// messages whose last training is older than MaxAge.
type PruneConfig struct {
	MaxAge   time.Duration `yaml:"max_age"`
	MinCount int           `yaml:"min_count"`
}

// Store holds token counts. Implementations are safe for concurrent use: Lookup runs
// concurrently with Apply and sees either all or none of one Apply call.
type Store interface {
	// Lookup sets out[i] to the counts of keys[i] and returns the totals.
	Lookup(ctx context.Context, keys []uint64, out []Counts) (Totals, error)
	// Apply applies the updates atomically and in order.
	Apply(ctx context.Context, ups []Update) ([]Outcome, error)
	Stats(ctx context.Context) (Stats, error)
	// Prune removes rare old tokens and returns how many it removed.
	Prune(ctx context.Context, cfg PruneConfig) (int, error)
	// Meta and SetMeta read and write small settings (the tokenizer fingerprint).
	Meta(ctx context.Context, key string) (string, error)
	SetMeta(ctx context.Context, key, value string) error
	Close() error
}

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("bayes: store is closed")

// Today returns the day number used for aging.
func Today() uint16 { return dayOf(time.Now()) }

func dayOf(t time.Time) uint16 { return uint16(t.Unix() / 86400) }

type entry struct {
	spam, ham uint32
	day       uint16
}

// table is the in-memory token table shared by MemStore and the SQLite cache.
type table struct {
	tokens     *tokenMap
	totals     Totals
	seen       map[uint64]trained
	seenLoaded bool // the SQLite store reads seen lazily
}

func newTable() *table {
	return &table{tokens: newTokenMap(), seen: map[uint64]trained{}, seenLoaded: true}
}

// delta is a planned relative change of one token.
type delta struct {
	spam, ham int32
	day       uint16
}

// plan is the effect of a batch of updates, computed against the current table.
type plan struct {
	tokens   map[uint64]delta
	dSpam    int64
	dHam     int64
	seen     map[uint64]trained // 0 deletes
	outcomes []Outcome
}

func (t *table) plan(ups []Update) *plan {
	p := &plan{tokens: map[uint64]delta{}, seen: map[uint64]trained{}, outcomes: make([]Outcome, len(ups))}
	seenNow := func(d uint64) trained {
		if c, ok := p.seen[d]; ok {
			return c
		}
		return t.seen[d]
	}
	add := func(toks []uint64, c Class, sign int32, day uint16) {
		for _, h := range toks {
			d := p.tokens[h]
			if c == Spam {
				d.spam += sign
			} else {
				d.ham += sign
			}
			if sign > 0 && day > d.day {
				d.day = day
			}
			p.tokens[h] = d
		}
		if c == Spam {
			p.dSpam += int64(sign)
		} else {
			p.dHam += int64(sign)
		}
	}
	today := Today()
	for i, u := range ups {
		day := u.Day
		if day == 0 {
			day = today
		}
		var prevRec trained
		if u.Digest != 0 {
			prevRec = seenNow(u.Digest)
		}
		prev := prevRec.class()
		switch {
		case u.Untrain && u.Digest != 0:
			if prev == 0 {
				p.outcomes[i] = NotTrained
				continue
			}
			add(u.Tokens, prev, -prevRec.times(), day)
			p.seen[u.Digest] = 0
		case u.Untrain:
			add(u.Tokens, u.Class, -1, day)
		case u.Reinforce && (prev == u.Class || u.Digest == 0):
			if prevRec.times() > maxReinforce {
				p.outcomes[i] = AlreadyTrained
				continue
			}
			add(u.Tokens, u.Class, 1, day)
			if u.Digest != 0 {
				p.seen[u.Digest] = prevRec + 1<<8
			}
			p.outcomes[i] = Reinforced
		case prev == u.Class:
			p.outcomes[i] = AlreadyTrained
			continue
		default:
			if prev != 0 {
				add(u.Tokens, prev, -prevRec.times(), day)
				p.outcomes[i] = Relearned
			}
			add(u.Tokens, u.Class, 1, day)
			if u.Digest != 0 {
				p.seen[u.Digest] = trained(u.Class)
			}
		}
	}
	return p
}

func addClamp(v uint32, d int32) uint32 {
	n := int64(v) + int64(d)
	if n < 0 {
		return 0
	}
	if n > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

func (t *table) apply(p *plan) {
	for h, d := range p.tokens {
		e, _ := t.tokens.get(h)
		e.spam = addClamp(e.spam, d.spam)
		e.ham = addClamp(e.ham, d.ham)
		if d.day > e.day {
			e.day = d.day
		}
		if e.spam == 0 && e.ham == 0 {
			t.tokens.del(h)
		} else {
			t.tokens.set(h, e)
		}
	}
	t.totals.Spam = addClamp(t.totals.Spam, int32(p.dSpam))
	t.totals.Ham = addClamp(t.totals.Ham, int32(p.dHam))
	for d, c := range p.seen {
		if c == 0 {
			delete(t.seen, d)
		} else {
			t.seen[d] = c
		}
	}
}

func (t *table) lookup(keys []uint64, out []Counts) Totals {
	for i, k := range keys {
		out[i] = t.tokens.counts(k)
	}
	return t.totals
}

func (t *table) stats() Stats {
	s := Stats{Totals: t.totals, Tokens: t.tokens.len(), Messages: len(t.seen)}
	s.OldestDay = 1<<16 - 1
	for _, e := range t.tokens.all() {
		if e.spam+e.ham == 1 {
			s.Hapaxes++
		}
		if e.day < s.OldestDay {
			s.OldestDay = e.day
		}
	}
	if t.tokens.len() == 0 {
		s.OldestDay = 0
	}
	return s
}

// prunable returns the tokens Prune would remove.
func (t *table) prunable(cfg PruneConfig, now time.Time) []uint64 {
	cutoff := dayOf(now.Add(-cfg.MaxAge))
	var out []uint64
	for h, e := range t.tokens.all() {
		if int(e.spam+e.ham) <= cfg.MinCount && e.day < cutoff {
			out = append(out, h)
		}
	}
	return out
}

// MemStore is an in-memory Store, for tests, evaluation and short-lived use.
type MemStore struct {
	mu     sync.RWMutex
	t      *table
	meta   map[string]string
	closed bool
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	return &MemStore{t: newTable(), meta: map[string]string{}}
}

func (m *MemStore) Lookup(ctx context.Context, keys []uint64, out []Counts) (Totals, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Totals{}, ErrClosed
	}
	return m.t.lookup(keys, out), nil
}

func (m *MemStore) Apply(ctx context.Context, ups []Update) ([]Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	p := m.t.plan(ups)
	m.t.apply(p)
	return p.outcomes, nil
}

func (m *MemStore) Stats(ctx context.Context) (Stats, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Stats{}, ErrClosed
	}
	return m.t.stats(), nil
}

func (m *MemStore) Prune(ctx context.Context, cfg PruneConfig) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	hs := m.t.prunable(cfg, time.Now())
	for _, h := range hs {
		m.t.tokens.del(h)
	}
	return len(hs), nil
}

func (m *MemStore) Meta(ctx context.Context, key string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.meta[key], nil
}

func (m *MemStore) SetMeta(ctx context.Context, key, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.meta[key] = value
	return nil
}

func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
