//go:build race

package content

// raceEnabled loosens the CPU bounds of the bomb tests: the race detector slows the
// walk about tenfold.
const raceEnabled = true
