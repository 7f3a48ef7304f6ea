package bayes

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/cputime"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// corpusDir is the exported SpamAssassin corpus (testenv.Corpus).
func corpusDir(tb testing.TB) string { return testenv.Corpus(tb) }

func readDir(tb testing.TB, dir string) [][]byte {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func trainCorpus(tb testing.TB) (*Classifier, [][]byte, [][]byte) {
	d := corpusDir(tb)
	ctx := context.Background()
	c, _ := New(Config{}, NewMemStore())
	// as `portcullis bayes train` does: one batch, then the TUNE passes
	var ups []Update
	for _, m := range readDir(tb, filepath.Join(d, "train", "spam")) {
		ups = append(ups, c.TrainUpdate(m, Spam))
	}
	for _, m := range readDir(tb, filepath.Join(d, "train", "ham")) {
		ups = append(ups, c.TrainUpdate(m, Ham))
	}
	if _, err := c.Store().Apply(ctx, ups); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Reinforce(ctx, ups); err != nil {
		tb.Fatal(err)
	}
	return c, readDir(tb, filepath.Join(d, "test", "spam")), readDir(tb, filepath.Join(d, "test", "ham"))
}

// TestCorpusAccuracy guards the targets of the test split (issue 5): at most 0.1% of
// the ham (1 of 806) and 3% of the spam (11 of 383) misclassified at the default
// cut-off. The measured numbers meet them by zero and one message, so a change of the
// tokenizer or the defaults that costs one message fails here: measure it by repeated
// cross-validation on the train split before adopting it (docs/bayes-experiments.md).
func TestCorpusAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	c, spam, ham := trainCorpus(t)
	ctx := context.Background()
	fp, fn := 0, 0
	for _, m := range spam {
		if sc, _ := c.Classify(ctx, m); !sc.Spam {
			fn++
		}
	}
	for _, m := range ham {
		if sc, _ := c.Classify(ctx, m); sc.Spam {
			fp++
		}
	}
	t.Logf("false positives %d/%d, false negatives %d/%d", fp, len(ham), fn, len(spam))
	if float64(fp) > 0.00125*float64(len(ham)) || float64(fn) > 0.03*float64(len(spam)) {
		t.Errorf("accuracy regressed: %d false positives of %d ham, %d false negatives of %d spam", fp, len(ham), fn, len(spam))
	}
}

func BenchmarkClassifyCorpus(b *testing.B) {
	c, spam, ham := trainCorpus(b)
	msgs := append(spam, ham...)
	ctx := context.Background()
	var n int64
	for _, m := range msgs {
		n += int64(len(m))
	}
	b.ResetTimer()
	cpu := cputime.Used()
	for b.Loop() {
		for _, m := range msgs {
			c.Classify(ctx, m)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*len(msgs))/(cputime.Used()-cpu).Seconds(), "msgs/cpu-s")
}

func BenchmarkTokenizeCorpus(b *testing.B) {
	_, spam, ham := trainCorpus(b)
	msgs := append(spam, ham...)
	tok := NewTokenizer(DefaultTokenizerConfig())
	var dst []uint64
	b.ResetTimer()
	cpu := cputime.Used()
	for b.Loop() {
		for _, m := range msgs {
			dst = tok.Hashes(dst[:0], m)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N*len(msgs))/(cputime.Used()-cpu).Seconds(), "msgs/cpu-s")
}

// TestClassifyRepeatsSameScore checks that Classify, which scores the tokens with
// their repeats, gives to the bit the score of the distinct tokens (ClassifyTokens
// of Hashes), on the test split.
func TestClassifyRepeatsSameScore(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	c, spam, ham := trainCorpus(t)
	ctx := context.Background()
	for i, m := range append(spam, ham...) {
		a, err := c.Classify(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		hs, header := c.Tokenizer().HashesHeader(nil, m)
		b, err := c.ClassifyTokens(ctx, hs, header, false)
		if err != nil {
			t.Fatal(err)
		}
		if a.Prob != b.Prob || a.Tokens != b.Tokens || a.Spam != b.Spam || a.Unsure != b.Unsure {
			t.Fatalf("message %d: Classify %+v, ClassifyTokens %+v", i, a, b)
		}
	}
}
