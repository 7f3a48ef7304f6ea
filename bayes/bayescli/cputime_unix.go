//go:build unix

package bayescli

import (
	"syscall"
	"time"
)

// cpuTime returns the user plus system CPU time of this process so far, which
// measures work even when the machine is shared with other load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
