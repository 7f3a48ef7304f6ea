package policy

import (
	"sort"
	"sync"
)

// memo holds the results of policy checks for one transaction, keyed by instance and stage
// (and recipient at the rcpt stage), so that each check runs at most once.
type memo struct {
	mu sync.Mutex
	m  map[memoKey]Result
}

type memoKey struct {
	instance string
	stage    Stage
	rcpt     string
}

func (m *memo) get(k memoKey) (Result, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.m[k]
	return r, ok
}

func (m *memo) put(k memoKey, r Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[memoKey]Result)
	}
	m.m[k] = r
}

// reset forgets the results of stage from and every later stage.
func (m *memo) reset(from Stage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.m {
		if k.stage >= from {
			delete(m.m, k)
		}
	}
}

// ordered returns the results in stage, instance and recipient order (deterministic).
func (m *memo) ordered() []Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]memoKey, 0, len(m.m))
	for k := range m.m {
		keys = append(keys, k)
	}
	sortKeys(keys)
	out := make([]Result, len(keys))
	for i, k := range keys {
		out[i] = m.m[k]
	}
	return out
}

// sortKeys orders keys by stage, instance and recipient.
func sortKeys(keys []memoKey) {
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.stage != b.stage {
			return a.stage < b.stage
		}
		if a.instance != b.instance {
			return a.instance < b.instance
		}
		return a.rcpt < b.rcpt
	})
}
