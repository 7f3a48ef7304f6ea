// Package idle keeps idle connections for reuse: a bounded stack, the most recently used
// connection on top (the least likely to have timed out). The LDAP client of auth and the
// clamd client of virus keep theirs in it.
package idle

import "sync"

// Stack holds idle connections. The zero value is empty and ready; it is safe for
// concurrent use.
type Stack[C any] struct {
	mu sync.Mutex
	s  []C
}

// Pop takes connections from the top until one is usable and returns it; those that are
// not usable it hands to discard, outside the lock. ok is false when none was usable.
func (st *Stack[C]) Pop(usable func(C) bool, discard func(C)) (c C, ok bool) {
	st.mu.Lock()
	for len(st.s) > 0 {
		c = st.s[len(st.s)-1]
		var zero C
		st.s[len(st.s)-1] = zero
		st.s = st.s[:len(st.s)-1]
		if usable(c) {
			st.mu.Unlock()
			return c, true
		}
		st.mu.Unlock()
		discard(c)
		st.mu.Lock()
	}
	st.mu.Unlock()
	var zero C
	return zero, false
}

// Push keeps c unless max connections are idle already, and reports whether it kept it:
// when not, the caller closes c.
func (st *Stack[C]) Push(c C, max int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.s) >= max {
		return false
	}
	st.s = append(st.s, c)
	return true
}

// Drain empties the stack and returns what it held, for the caller to close.
func (st *Stack[C]) Drain() []C {
	st.mu.Lock()
	defer st.mu.Unlock()
	all := st.s
	st.s = nil
	return all
}

// Len returns the number of idle connections.
func (st *Stack[C]) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.s)
}
