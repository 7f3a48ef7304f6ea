//go:build race

package headers

// raceEnabled thins the corpus pass under the race detector, which slows it tenfold.
const raceEnabled = true
