//go:build !unix

package bayescli

import "time"

func cpuTime() time.Duration { return 0 }
