package headers

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/internal/cputime"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// corpus loads the SpamAssassin public corpus ($PORTCULLIS_SA_CORPUS or .cache/sa-corpus
// at the repository root). A missing corpus skips outside CI and fails in CI.
func corpus(tb testing.TB) [][]byte {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(testenv.Corpus(tb), "*", "*", "*.eml"))
	if len(files) == 0 {
		tb.Fatal("the SpamAssassin corpus directory holds no messages")
	}
	out := make([][]byte, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func shippedTables(tb testing.TB) *Tables {
	p, err := New(Config{HeaderChecks: "maps/header_checks.pcre", MIMEHeaderChecks: "maps/mime_header_checks.pcre", BodyChecks: "maps/body_checks.pcre"})
	if err != nil {
		tb.Fatal(err)
	}
	t := p.Tables()
	return &t
}

// TestCorpusMapsAndDates runs the shipped maps and the date checks over every corpus
// message: nothing may fail, and the results must be plausible (the corpus is from 2002,
// ham is not rejected wholesale, most dates parse).
func TestCorpusMapsAndDates(t *testing.T) {
	msgs := corpus(t)
	if raceEnabled {
		// Every message is walked (with the race detector too) by content's TestCorpus;
		// a fifth of them is enough here.
		var some [][]byte
		for i := 0; i < len(msgs); i += 5 {
			some = append(some, msgs[i])
		}
		msgs = some
	}
	tables := shippedTables(t)
	var hits, rejects, invalid, missing int
	for _, raw := range msgs {
		m, err := content.WalkBytes(raw, content.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		rep := tables.Check(m)
		if len(rep.Errors) > 0 {
			t.Errorf("match errors: %v", rep.Errors)
		}
		hits += len(rep.Findings)
		if rep.Reject {
			rejects++
		}
		d := Dates(m.Header, time.Date(2002, 10, 1, 0, 0, 0, 0, time.UTC))
		if d.Invalid {
			invalid++
		}
		if d.Missing {
			missing++
		}
	}
	t.Logf("%d messages: %d map hits, %d rejected, %d dates invalid, %d missing", len(msgs), hits, rejects, invalid, missing)
	if invalid*100 > len(msgs) {
		t.Errorf("%d of %d dates did not parse", invalid, len(msgs))
	}
	if rejects*10 > len(msgs) {
		t.Errorf("the example maps reject %d of %d messages", rejects, len(msgs))
	}
}

// BenchmarkPipeline measures the full content pass over the corpus on one core: the MIME
// walk with attachment checks, the rule facts, the shipped header/MIME/body maps and the
// date checks. Run: go test -bench Pipeline -cpu 1 ./headers
func BenchmarkPipeline(b *testing.B) {
	msgs := corpus(b)
	tables := shippedTables(b)
	now := time.Date(2002, 10, 1, 0, 0, 0, 0, time.UTC)
	var bytes int64
	for _, m := range msgs {
		bytes += int64(len(m))
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Used()
	n := 0
	for i := 0; i < b.N; i++ {
		raw := msgs[i%len(msgs)]
		m, err := content.WalkBytes(raw, content.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		_ = content.Facts(m)
		_ = tables.Check(m)
		_ = Dates(m.Header, now)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	if cpu := cputime.Used() - cpu0; cpu > 0 {
		// Throughput per CPU-second: what one otherwise idle core achieves.
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
	b.SetBytes(bytes / int64(len(msgs)))
}
