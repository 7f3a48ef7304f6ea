// Package evict bounds the in-memory maps that untrusted clients fill (the greylist
// triplets and the rate-limit windows of every client address): a full map forgets an
// arbitrary entry for each new one.
package evict

// MakeRoom forgets arbitrary entries of m, when it holds max or more and key is not in
// it, until key can be added within max. Go's map iteration starts at a random place,
// so a flood of new keys cannot choose which old entry survives.
func MakeRoom[V any](m map[string]V, key string, max int) {
	if _, ok := m[key]; ok || len(m) < max {
		return
	}
	for k := range m {
		delete(m, k)
		if len(m) < max {
			return
		}
	}
}
