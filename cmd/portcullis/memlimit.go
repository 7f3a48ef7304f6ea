package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// setMemoryLimit applies memory_limit (see config.Config.MemoryLimit) and returns the
// limit in force, 0 for none. GOMEMLIMIT in the environment wins: the runtime has read it.
func setMemoryLimit(cfg bytesize.Size) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1) // reads the limit without changing it
	}
	limit := int64(cfg)
	switch {
	case cfg < 0:
		return 0
	case cfg == 0:
		avail := availableMemory()
		if avail <= 0 {
			return 0
		}
		limit = avail / 4 * 3
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// availableMemory is what the process may use: the cgroup v2 limit (memory.max) when
// one is set, else the machine's MemTotal; 0 when neither can be read.
func availableMemory() int64 {
	total := memTotal()
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			return n
		}
	}
	return total
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
