package bayescli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/internal/cputime"
)

// EvalOptions are the options of `bayes eval`. Either the four given sets, or Spam,
// Ham and Folds for k-fold cross-validation.
type EvalOptions struct {
	Config                                 bayes.Config
	TrainSpam, TrainHam, TestSpam, TestHam string
	Spam, Ham                              string
	Folds                                  int
	JSON                                   bool      // one JSON line instead of text
	ROC                                    string    // write the ROC curve as PNG here
	Errors                                 io.Writer // when set, the misclassified test messages are listed here
}

// EvalResult is what Eval measured; its JSON form is the --json line.
type EvalResult struct {
	Mode          string   `json:"mode"` // "split" or "kfold"
	Folds         int      `json:"folds,omitempty"`
	TrainSpam     int      `json:"train_spam"`
	TrainHam      int      `json:"train_ham"`
	TestSpam      int      `json:"test_spam"`
	TestHam       int      `json:"test_ham"`
	Threshold     float64  `json:"threshold"`
	FP            int      `json:"fp"`
	FN            int      `json:"fn"`
	FPRate        float64  `json:"fp_rate"`
	FNRate        float64  `json:"fn_rate"`
	UnsureSpam    int      `json:"unsure_spam"`
	UnsureHam     int      `json:"unsure_ham"`
	AUC           float64  `json:"auc"`
	OneMinusAUC   float64  `json:"one_minus_auc"`
	TrainPerSec   float64  `json:"train_msgs_per_sec,omitempty"`
	ClassPerSec   float64  `json:"classify_msgs_per_sec,omitempty"`
	ClassParallel float64  `json:"classify_parallel_msgs_per_sec,omitempty"`
	TrainPerCPU   float64  `json:"train_msgs_per_cpu_sec,omitempty"`
	ClassPerCPU   float64  `json:"classify_msgs_per_cpu_sec,omitempty"`
	Workers       int      `json:"workers,omitempty"`
	Tokens        int      `json:"store_tokens"`
	Scores        []Scored `json:"-"`
}

func loadNamed(ctx context.Context, path string) ([][]byte, []string, error) {
	src, err := ListSource(path)
	if err != nil {
		return nil, nil, err
	}
	var out [][]byte
	var names []string
	err = src.Each(ctx, func(m Message) error {
		out = append(out, m.Raw)
		names = append(names, m.Name)
		return nil
	})
	return out, names, err
}

// Eval trains and tests a classifier and reports the error rates, ROC area and speed.
func Eval(ctx context.Context, o EvalOptions, out io.Writer) (*EvalResult, error) {
	var res *EvalResult
	var err error
	switch {
	case o.Spam != "" || o.Ham != "":
		if o.Spam == "" || o.Ham == "" {
			return nil, fmt.Errorf("eval: k-fold needs both --spam and --ham")
		}
		res, err = evalKFold(ctx, o)
	case o.TrainSpam != "" && o.TrainHam != "" && o.TestSpam != "" && o.TestHam != "":
		res, err = evalSplit(ctx, o)
	default:
		return nil, fmt.Errorf("eval: give --train-spam, --train-ham, --test-spam and --test-ham, or --spam, --ham and --folds")
	}
	if err != nil {
		return nil, err
	}
	if o.ROC != "" {
		f, err := os.Create(o.ROC)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		if err := WriteROCPNG(f, res.Scores); err != nil {
			f.Close()
			return nil, fmt.Errorf("eval: write ROC %s: %w", o.ROC, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("eval: write ROC %s: %w", o.ROC, err)
		}
	}
	if o.JSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", b)
	} else {
		printResult(out, res)
	}
	return res, nil
}

func printResult(w io.Writer, r *EvalResult) {
	if r.Mode == "kfold" {
		fmt.Fprintf(w, "%d-fold cross-validation over %d spam and %d ham\n", r.Folds, r.TestSpam, r.TestHam)
	} else {
		fmt.Fprintf(w, "trained on %d spam and %d ham, tested on %d spam and %d ham\n", r.TrainSpam, r.TrainHam, r.TestSpam, r.TestHam)
	}
	fmt.Fprintf(w, "threshold %.2f: false positives %d/%d (%.2f%%), false negatives %d/%d (%.2f%%)\n",
		r.Threshold, r.FP, r.TestHam, 100*r.FPRate, r.FN, r.TestSpam, 100*r.FNRate)
	fmt.Fprintf(w, "unsure: %d spam, %d ham\n", r.UnsureSpam, r.UnsureHam)
	fmt.Fprintf(w, "ROC area %.5f (1 - area = %.5f)\n", r.AUC, r.OneMinusAUC)
	if r.TrainPerSec > 0 {
		fmt.Fprintf(w, "train %.0f msgs/s (%.0f per CPU second), classify %.0f msgs/s (%.0f per CPU second) in one goroutine, %.0f msgs/s in %d\n",
			r.TrainPerSec, r.TrainPerCPU, r.ClassPerSec, r.ClassPerCPU, r.ClassParallel, r.Workers)
	}
}

// summarize counts errors by the classifier's verdicts (spam[i]), which also treat a
// message without any evidence as unsure.
func summarize(r *EvalResult, cfg bayes.Config, scores []Scored, unsure, verdicts []bool) {
	cfg = cfgDefaults(cfg)
	r.Threshold = cfg.SpamCutoff
	r.Scores = scores
	for i, s := range scores {
		spam := verdicts[i]
		if s.Spam {
			r.TestSpam++
			if !spam {
				r.FN++
			}
			if unsure[i] {
				r.UnsureSpam++
			}
		} else {
			r.TestHam++
			if spam {
				r.FP++
			}
			if unsure[i] {
				r.UnsureHam++
			}
		}
	}
	r.FPRate = div(float64(r.FP), float64(r.TestHam))
	r.FNRate = div(float64(r.FN), float64(r.TestSpam))
	r.AUC = AUC(scores)
	r.OneMinusAUC = 1 - r.AUC
}

func cfgDefaults(cfg bayes.Config) bayes.Config {
	c, err := bayes.New(cfg, bayes.NewMemStore())
	if err != nil {
		return cfg
	}
	return c.Config()
}

func evalSplit(ctx context.Context, o EvalOptions) (*EvalResult, error) {
	sets := make([][][]byte, 4)
	names := make([][]string, 4)
	for i, p := range []string{o.TrainSpam, o.TrainHam, o.TestSpam, o.TestHam} {
		m, n, err := loadNamed(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		sets[i], names[i] = m, n
	}
	testNames := append(append([]string{}, names[2]...), names[3]...)
	store := bayes.NewMemStore()
	c, err := bayes.New(o.Config, store)
	if err != nil {
		return nil, err
	}
	r := &EvalResult{Mode: "split", TrainSpam: len(sets[0]), TrainHam: len(sets[1])}
	// train in file order, alternating classes as a real mail stream would
	var exs []bayes.Example
	for i := 0; i < max(len(sets[0]), len(sets[1])); i++ {
		if i < len(sets[0]) {
			exs = append(exs, bayes.Example{Raw: sets[0][i], Class: bayes.Spam})
		}
		if i < len(sets[1]) {
			exs = append(exs, bayes.Example{Raw: sets[1][i], Class: bayes.Ham})
		}
	}
	start, cpu := time.Now(), cputime.Used()
	ups := make([]bayes.Update, len(exs))
	for i, ex := range exs {
		ups[i] = c.TrainUpdate(ex.Raw, ex.Class)
	}
	for i := 0; i < len(ups); i += 500 {
		if _, err := store.Apply(ctx, ups[i:min(i+500, len(ups))]); err != nil {
			return nil, err
		}
	}
	if _, err := c.Reinforce(ctx, ups); err != nil {
		return nil, err
	}
	r.TrainPerSec = float64(len(exs)) / time.Since(start).Seconds()
	r.TrainPerCPU = perCPU(len(exs), cputime.Used()-cpu)

	test := append(append([][]byte{}, sets[2]...), sets[3]...)
	isSpam := func(i int) bool { return i < len(sets[2]) }
	scores := make([]Scored, len(test))
	unsure := make([]bool, len(test))
	verdicts := make([]bool, len(test))
	for i, raw := range test {
		sc, err := c.Classify(ctx, raw)
		if err != nil {
			return nil, err
		}
		scores[i] = Scored{Prob: sc.Prob, Spam: isSpam(i)}
		unsure[i], verdicts[i] = sc.Unsure, sc.Spam
	}
	// the rate: further passes (the first one warmed the buffers), at least 3 and
	// until half a second has passed
	start, cpu = time.Now(), cputime.Used()
	passes := 0
	for passes < 3 || (time.Since(start) < time.Second/2 && passes < 50) {
		for _, raw := range test {
			if _, err := c.Classify(ctx, raw); err != nil {
				return nil, err
			}
		}
		passes++
	}
	r.ClassPerSec = float64(passes*len(test)) / time.Since(start).Seconds()
	r.ClassPerCPU = perCPU(passes*len(test), cputime.Used()-cpu)
	// the same again on all cores, checking that the scores do not change
	r.Workers = runtime.GOMAXPROCS(0)
	start = time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var perr error
	for w := 0; w < r.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := w; k < passes*len(test); k += r.Workers {
				i := k % len(test)
				sc, err := c.Classify(ctx, test[i])
				if err == nil && math.Abs(sc.Prob-scores[i].Prob) > 1e-9 {
					err = fmt.Errorf("eval: message %d scored %v then %v", i, scores[i].Prob, sc.Prob)
				}
				if err != nil {
					mu.Lock()
					perr = err
					mu.Unlock()
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if perr != nil {
		return nil, perr
	}
	r.ClassParallel = float64(passes*len(test)) / time.Since(start).Seconds()
	st, err := store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	r.Tokens = st.Tokens
	summarize(r, o.Config, scores, unsure, verdicts)
	listErrors(o.Errors, scores, unsure, verdicts, testNames)
	return r, nil
}

// listErrors writes a line per misclassified or unsure message to w (when set).
func listErrors(w io.Writer, scores []Scored, unsure, verdicts []bool, names []string) {
	if w == nil {
		return
	}
	for i, s := range scores {
		if s.Spam != verdicts[i] || unsure[i] {
			kind := map[bool]string{true: "FN", false: "FP"}[s.Spam]
			if unsure[i] && s.Spam == verdicts[i] {
				kind = "unsure"
			}
			fmt.Fprintf(w, "%s %.6f %s\n", kind, s.Prob, names[i])
		}
	}
}

func perCPU(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func evalKFold(ctx context.Context, o EvalOptions) (*EvalResult, error) {
	if o.Folds < 2 {
		o.Folds = 10
	}
	spam, spamNames, err := loadNamed(ctx, o.Spam)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	ham, hamNames, err := loadNamed(ctx, o.Ham)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	tok := bayes.NewTokenizer(o.Config.Tokenizer)
	scores, unsure, verdicts, err := kfold(ctx, o.Config, tokenize(tok, spam), tokenize(tok, ham), o.Folds)
	if err != nil {
		return nil, err
	}
	r := &EvalResult{Mode: "kfold", Folds: o.Folds, TrainSpam: len(spam) * (o.Folds - 1) / o.Folds, TrainHam: len(ham) * (o.Folds - 1) / o.Folds}
	summarize(r, o.Config, scores, unsure, verdicts)
	listErrors(o.Errors, scores, unsure, verdicts, append(spamNames, hamNames...))
	return r, nil
}

// tokenize returns the tokens of each message as an Update (Tokens and Header set).
func tokenize(tok *bayes.Tokenizer, msgs [][]byte) []bayes.Update {
	out := make([]bayes.Update, len(msgs))
	for i, m := range msgs {
		out[i].Tokens, out[i].Header = tok.HashesHeader(nil, m)
	}
	return out
}

// kfold cross-validates cfg on tokenized messages: message i is in fold i mod k; each
// fold is scored by a classifier trained on the other folds. Scores are returned with
// spam first, in input order.
func kfold(ctx context.Context, cfg bayes.Config, spam, ham []bayes.Update, k int) (scores []Scored, unsure, verdicts []bool, err error) {
	scores = make([]Scored, len(spam)+len(ham))
	unsure = make([]bool, len(scores))
	verdicts = make([]bool, len(scores))
	for f := 0; f < k; f++ {
		store := bayes.NewMemStore()
		c, err := bayes.New(cfg, store)
		if err != nil {
			return nil, nil, nil, err
		}
		var ups []bayes.Update
		for i, h := range spam {
			if i%k != f {
				ups = append(ups, bayes.Update{Class: bayes.Spam, Tokens: h.Tokens, Header: h.Header})
			}
		}
		for i, h := range ham {
			if i%k != f {
				ups = append(ups, bayes.Update{Class: bayes.Ham, Tokens: h.Tokens, Header: h.Header})
			}
		}
		if _, err := store.Apply(ctx, ups); err != nil {
			return nil, nil, nil, err
		}
		if _, err := c.Reinforce(ctx, ups); err != nil {
			return nil, nil, nil, err
		}
		for i, h := range spam {
			if i%k == f {
				sc, err := c.ClassifyTokens(ctx, h.Tokens, h.Header, false)
				if err != nil {
					return nil, nil, nil, err
				}
				scores[i] = Scored{Prob: sc.Prob, Spam: true}
				unsure[i], verdicts[i] = sc.Unsure, sc.Spam
			}
		}
		for i, h := range ham {
			if i%k == f {
				sc, err := c.ClassifyTokens(ctx, h.Tokens, h.Header, false)
				if err != nil {
					return nil, nil, nil, err
				}
				scores[len(spam)+i] = Scored{Prob: sc.Prob}
				unsure[len(spam)+i], verdicts[len(spam)+i] = sc.Unsure, sc.Spam
			}
		}
	}
	return scores, unsure, verdicts, nil
}
