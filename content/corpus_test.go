package content

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// corpusFiles lists the messages of the SpamAssassin corpus (testenv.Corpus).
func corpusFiles(tb testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(testenv.Corpus(tb), "*", "*", "*.eml"))
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

// TestCorpus walks every message of the SpamAssassin corpus: none may fail or panic, and
// the walk must find the structure a sane message has.
func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	var parts, atts, urls, malformed int
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := WalkBytes(raw, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(m.Parts) == 0 || len(m.Header) == 0 {
			t.Errorf("%s: no parts or no header", f)
		}
		parts += len(m.Parts)
		atts += len(m.Attachments)
		urls += len(m.URLs)
		if m.Malformed {
			malformed++
		}
	}
	t.Logf("%d messages: %d parts, %d attachments, %d URLs, %d malformed", len(files), parts, atts, urls, malformed)
	if urls == 0 || parts < len(files) {
		t.Errorf("implausible totals: %d parts, %d URLs", parts, urls)
	}
}

// BenchmarkWalk measures the MIME walk with attachment checks and rule facts over the
// corpus: go test -bench Walk -cpu 1 ./content
func BenchmarkWalk(b *testing.B) {
	files := corpusFiles(b)
	msgs := make([][]byte, len(files))
	var total int64
	for i, f := range files {
		msgs[i], _ = os.ReadFile(f)
		total += int64(len(msgs[i]))
	}
	b.SetBytes(total / int64(len(msgs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := WalkBytes(msgs[i%len(msgs)], Limits{})
		if err != nil {
			b.Fatal(err)
		}
		_ = Facts(m)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
