//go:build unix

package content

import (
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content/contenttest"
)

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure walks raw and returns the message, the CPU time and the bytes allocated.
func measure(t *testing.T, raw []byte) (*Message, time.Duration, uint64) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c0 := cpuTime()
	m, err := WalkBytes(raw, Limits{})
	cpu := cpuTime() - c0
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	return m, cpu, after.TotalAlloc - before.TotalAlloc
}

// TestBombs walks decompression bombs of every format, up to 10 GiB expanded: each is
// a bomb (max_ratio), judged in well under a second of CPU, allocating a small fraction
// of what it expands to (a few MiB besides the decoded attachment itself).
func TestBombs(t *testing.T) {
	const G = contenttest.GiB
	cases := []struct {
		name, file, typ string
		data            func() []byte
		expands         int64
	}{
		{"gzip 1 GiB", "zeros.bin.gz", "application/gzip", func() []byte { return contenttest.GzipZeros("zeros.bin", G) }, G},
		{"gzip 10 GiB", "zeros.bin.gz", "application/gzip", func() []byte { return contenttest.GzipZeros("zeros.bin", 10*G) }, 10 * G},
		{"gzip of gzip 10 GiB", "zeros.gz.gz", "application/gzip", func() []byte { return contenttest.Gzip(contenttest.GzipZeros("zeros.bin", 10*G)) }, 10 * G},
		{"tar.gz 10 GiB", "backup.tar.gz", "application/gzip", func() []byte { return contenttest.TarGzZeros("disk.img", 10*G) }, 10 * G},
		{"bzip2 10 GiB", "zeros.bz2", "application/x-bzip2", func() []byte { return contenttest.Bzip2Zeros(10 * G) }, 10 * G},
		{"zip 1 GiB", "zeros.zip", "application/zip", func() []byte { return contenttest.ZipZeros("zeros.bin", G) }, G},
		{"zip 10 GiB", "zeros.zip", "application/zip", func() []byte { return contenttest.ZipZeros("zeros.bin", 10*G) }, 10 * G},
		{"zip in zip 10 GiB", "outer.zip", "application/zip", func() []byte {
			return contenttest.Zip(contenttest.Entry{Name: "inner.zip", Data: contenttest.ZipZeros("zeros.bin", 10*G)})
		}, 10 * G},
		{"gzip in zip 10 GiB", "outer.zip", "application/zip", func() []byte {
			return contenttest.Zip(contenttest.Entry{Name: "zeros.gz", Data: contenttest.GzipZeros("zeros.bin", 10*G)})
		}, 10 * G},
		{"many small entries", "many.zip", "application/zip", func() []byte {
			// No entry passes the 1 MiB floor alone; together they expand 1000-fold.
			var es []contenttest.Entry
			for i := 0; i < 40; i++ {
				es = append(es, contenttest.Entry{Name: string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".bin", Data: make([]byte, 1<<20-1)})
			}
			return contenttest.Zip(es...)
		}, 40 << 20},
		{"42.zip, three levels", "42.zip", "application/zip", func() []byte {
			return contenttest.Nest(3, 16, contenttest.ZipZeros("0.dat", G))
		}, 16 * 16 * G},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Under the race detector, leave out what takes the same path as a smaller case.
			if raceEnabled && (c.name == "tar.gz 10 GiB" || c.name == "zip 10 GiB") {
				t.Skip("the same path as a smaller case; slow under the race detector")
			}
			data := c.data()
			raw := []byte(attach(c.file, c.typ, data))
			m, cpu, alloc := measure(t, raw)
			t.Logf("%s: %d bytes attached, expands to %d MiB: %v CPU, %.1f MiB allocated, limits %v",
				c.file, len(data), c.expands>>20, cpu.Round(time.Millisecond), float64(alloc)/(1<<20), m.LimitsHit)
			bomb := false
			for _, a := range m.Attachments {
				bomb = bomb || a.Bomb
			}
			if !bomb || !Facts(m)["has_bomb"].(bool) || !slices.Contains(m.LimitsHit, LimitRatio) || !m.Truncated {
				t.Fatalf("not reported as a bomb: limits %v, errors %v, %s", m.LimitsHit, m.Errors, describe(m))
			}
			maxCPU := time.Second
			if raceEnabled {
				maxCPU *= 10
			}
			if cpu > maxCPU {
				t.Errorf("judged in %v of CPU", cpu)
			}
			// The decoded attachment (base64 to bytes) is the walk's; the expansion is not.
			if limit := uint64(len(data)) + 48<<20; alloc > limit {
				t.Errorf("%.1f MiB allocated", float64(alloc)/(1<<20))
			}
		})
	}
}

// TestNests: archives nested deeper than max_archive_depth, whatever their fan-out or
// format, are truncated walks (never clean), and the work stays bounded.
func TestNests(t *testing.T) {
	pe := contenttest.PE()
	gzChain := contenttest.Gzip(pe)
	for i := 0; i < 9; i++ {
		gzChain = contenttest.Gzip(gzChain)
	}
	cases := []struct {
		name, file, typ string
		data            []byte
		want            []string
	}{
		// What the first three levels declare already expands past max_ratio.
		{"10-deep 42.zip-style nest", "42.zip", "application/zip", contenttest.Nest(10, 16, contenttest.ZipZeros("0.dat", contenttest.GiB)),
			[]string{LimitArchiveDepth, LimitRatio}},
		// Sixteen-fold at every level: recursive extraction writes 16^n copies.
		{"10-deep nest of small files", "nest.zip", "application/zip", contenttest.Nest(10, 16, contenttest.Zip(contenttest.Entry{Name: "invoice.exe", Data: pe})),
			[]string{LimitArchiveDepth, LimitRatio}},
		{"10-deep nest, fan-out 2", "nest2.zip", "application/zip", contenttest.Nest(10, 2, contenttest.Zip(contenttest.Entry{Name: "invoice.exe", Data: pe})),
			[]string{LimitArchiveDepth}},
		{"10 zips, one in another", "deep.zip", "application/zip", contenttest.ZipLevels(10, contenttest.Entry{Name: "invoice.exe", Data: pe}),
			[]string{LimitArchiveDepth}},
		{"10 gzip layers", "x.gz", "application/gzip", gzChain, []string{LimitArchiveDepth}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, cpu, alloc := measure(t, []byte(attach(c.file, c.typ, c.data)))
			t.Logf("%s: %d bytes: %v CPU, %.1f MiB allocated, limits %v", c.file, len(c.data), cpu.Round(time.Millisecond), float64(alloc)/(1<<20), m.LimitsHit)
			if !m.Truncated || !slices.Equal(m.LimitsHit, c.want) {
				t.Fatalf("limits %v truncated %v, want %v", m.LimitsHit, m.Truncated, c.want)
			}
			if cpu > time.Second && !raceEnabled {
				t.Errorf("judged in %v of CPU", cpu)
			}
		})
	}
}

// TestArchiveWork: entries that are expensive to look at (a bzip2 block is decoded whole
// before its first byte) are paid from max_uncompressed_size, so a zip of a thousand of
// them costs a bounded fraction of a second and is a truncated walk.
func TestArchiveWork(t *testing.T) {
	data := contenttest.ZipOfBzip2(1000)
	m, cpu, alloc := measure(t, []byte(attach("bz.zip", "application/zip", data)))
	t.Logf("1000 bzip2 entries: %d bytes: %v CPU, %.1f MiB allocated, limits %v", len(data), cpu.Round(time.Millisecond), float64(alloc)/(1<<20), m.LimitsHit)
	if !m.Truncated || !slices.Equal(m.LimitsHit, []string{LimitUncompressedSize}) {
		t.Fatalf("limits %v", m.LimitsHit)
	}
	if cpu > 500*time.Millisecond && !raceEnabled || alloc > 400<<20 {
		t.Errorf("%v of CPU, %d MiB allocated", cpu, alloc>>20)
	}
}

// TestNotBombs: ordinary archives, highly compressible ones included, are no bombs.
func TestNotBombs(t *testing.T) {
	text := contenttest.LowEntropy(3<<20, 3)
	for name, data := range map[string][]byte{
		"text.zip":        contenttest.Zip(contenttest.Entry{Name: "log.txt", Data: text}),
		"text.tar.gz":     contenttest.TarGz(contenttest.Entry{Name: "log.txt", Data: text}),
		"page.zip":        contenttest.Zip(contenttest.Entry{Name: "blank.bmp", Data: make([]byte, 900<<10)}),
		"nested.zip":      contenttest.Zip(contenttest.Entry{Name: "inner.zip", Data: contenttest.Zip(contenttest.Entry{Name: "log.txt", Data: text})}),
		"text.gz":         contenttest.Gzip(text),
		"source.tar.gz":   contenttest.TarGz(contenttest.Entry{Name: "a.go", Data: text[:1<<20]}, contenttest.Entry{Name: "b.go", Data: text[1<<20 : 3<<20]}),
		"zip of tar.gz":   contenttest.Zip(contenttest.Entry{Name: "src.tar.gz", Data: contenttest.TarGz(contenttest.Entry{Name: "a.go", Data: text[:2<<20]})}),
		"two levels.zip":  contenttest.ZipLevels(2, contenttest.Entry{Name: "a.txt", Data: text[:1<<20]}),
		"three levels.gz": contenttest.Gzip(contenttest.Gzip(text[:1<<20])),
	} {
		m, err := WalkBytes([]byte(attach(name, "application/octet-stream", data)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Truncated || len(m.LimitsHit) > 0 || Facts(m)["has_bomb"].(bool) {
			t.Errorf("%s: limits %v, %s", name, m.LimitsHit, describe(m))
		}
	}
}
