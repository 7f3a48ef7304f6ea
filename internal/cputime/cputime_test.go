package cputime

import (
	"runtime"
	"testing"
	"time"
)

func TestUsedGrows(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no process CPU time here")
	}
	start := Used()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if Used() > start {
			return
		}
	}
	t.Fatalf("CPU time stayed at %v while spinning", start)
}
