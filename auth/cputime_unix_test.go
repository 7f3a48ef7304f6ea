//go:build unix

package auth

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used, so that benchmarks on
// a shared, loaded machine can report cost independently of wall-clock waits.
func cpuTime() time.Duration {
	var r syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &r) != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
