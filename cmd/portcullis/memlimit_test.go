package main

import (
	"runtime/debug"
	"testing"

	"github.com/portcullis-mail/portcullis/bytesize"
)

func TestSetMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)

	if got := setMemoryLimit(512 * bytesize.MiB); got != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("explicit limit: %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	avail := availableMemory()
	if avail <= 0 {
		t.Fatal("no memory figure from the cgroup or /proc/meminfo")
	}
	if got := setMemoryLimit(0); got != avail/4*3 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("default limit %d, want %d", got, avail/4*3)
	}
	debug.SetMemoryLimit(old)
	if got := setMemoryLimit(-1); got != 0 || debug.SetMemoryLimit(-1) != old {
		t.Fatalf("negative: %d", got)
	}
}
