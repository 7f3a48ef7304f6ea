package bayescli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/portcullis-mail/portcullis/bayes"
)

// TuneOptions are the options of the tuning run that chose the defaults. It must only
// ever be given the training split: tuning on the test split would overstate accuracy.
type TuneOptions struct {
	Spam, Ham string
	Folds     int
	Grid      string // "tokenizer", "params" or "" for both
}

type variant struct {
	name string
	cfg  bayes.Config
}

func tokVariants() []variant {
	base := bayes.Config{}
	v := []variant{{"default", base}}
	add := func(name string, f func(*bayes.TokenizerConfig)) {
		c := base
		f(&c.Tokenizer)
		v = append(v, variant{name, c})
	}
	add("bigrams", func(t *bayes.TokenizerConfig) { t.Bigrams = true })
	add("html_tags", func(t *bayes.TokenizerConfig) { t.HTMLTags = true })
	add("no received", func(t *bayes.TokenizerConfig) { t.NoReceived = true })
	add("split_punct", func(t *bayes.TokenizerConfig) { t.SplitPunct = true })
	add("no_header_names", func(t *bayes.TokenizerConfig) { t.NoHeaderNames = true })
	add("headers without message-id,date", func(t *bayes.TokenizerConfig) {
		t.Headers = bayes.DefaultHeaders[:len(bayes.DefaultHeaders)-2]
	})
	add("headers:subject,from only", func(t *bayes.TokenizerConfig) { t.Headers = []string{"subject", "from"} })
	add("caps", func(t *bayes.TokenizerConfig) { t.Caps = true })
	add("caps+split_punct", func(t *bayes.TokenizerConfig) { t.Caps = true; t.SplitPunct = true })
	add("all headers+split_punct", func(t *bayes.TokenizerConfig) { t.Headers = []string{"*"}; t.SplitPunct = true })
	add("max_received=1", func(t *bayes.TokenizerConfig) { t.MaxReceived = 1 })
	add("max_received=2", func(t *bayes.TokenizerConfig) { t.MaxReceived = 2 })
	add("max_received=4", func(t *bayes.TokenizerConfig) { t.MaxReceived = 4 })
	add("subject_words", func(t *bayes.TokenizerConfig) { t.SubjectWords = true })
	add("all headers", func(t *bayes.TokenizerConfig) { t.Headers = []string{"*"} })
	add("max_word=20", func(t *bayes.TokenizerConfig) { t.MaxWord = 20 })
	add("min_word=2", func(t *bayes.TokenizerConfig) { t.MinWord = 2 })
	return v
}

func paramVariants() []variant {
	var v []variant
	for _, mt := range []int{150, 1000} {
		for _, md := range []float64{0.375, 0.45} {
			for _, s := range []float64{0.0178, 0.1, 0.45} {
				v = append(v, variant{fmt.Sprintf("s=%g min_dev=%g max_tokens=%d", s, md, mt), bayes.Config{S: s, MinDev: md, MaxTokens: mt}})
			}
		}
	}
	for _, s := range []float64{0.05, 0.1, 0.2, 0.45, 1} {
		for _, md := range []float64{0.05, 0.1, 0.2, 0.3} {
			for _, mt := range []int{50, 150, 400} {
				v = append(v, variant{fmt.Sprintf("s=%g min_dev=%g max_tokens=%d", s, md, mt),
					bayes.Config{S: s, MinDev: md, MaxTokens: mt}})
			}
		}
	}
	return v
}

// Tune cross-validates variants of the configuration on one (training) corpus and
// prints, for each, false positives and negatives at several cut-offs and 1 − ROC area.
func Tune(ctx context.Context, o TuneOptions, out io.Writer) error {
	if o.Folds < 2 {
		o.Folds = 10
	}
	spam, spamNames, err := loadNamed(ctx, o.Spam)
	if err != nil {
		return err
	}
	ham, hamNames, err := loadNamed(ctx, o.Ham)
	if err != nil {
		return err
	}
	if o.Grid == "errors" {
		// list the cross-validation errors of the default configuration
		tok := bayes.NewTokenizer(bayes.TokenizerConfig{})
		scores, unsure, verdicts, err := KFold(ctx, bayes.Config{}, Tokenize(tok, spam), Tokenize(tok, ham), o.Folds)
		if err != nil {
			return err
		}
		names := append(spamNames, hamNames...)
		for i, s := range scores {
			if s.Spam != verdicts[i] {
				fmt.Fprintf(out, "%s %.6f unsure=%v %s\n", map[bool]string{true: "FN", false: "FP"}[s.Spam], s.Prob, unsure[i], names[i])
			}
		}
		return nil
	}
	var vs []variant
	if o.Grid == "" || o.Grid == "tokenizer" {
		vs = append(vs, tokVariants()...)
	}
	if o.Grid == "x" {
		for _, x := range []float64{0.4, 0.5, 0.6} {
			for _, sv := range []float64{0.05, 0.1, 0.2, 0.45} {
				for _, md := range []float64{0.3, 0.375, 0.4, 0.45} {
					vs = append(vs, variant{fmt.Sprintf("x=%g s=%g min_dev=%g", x, sv, md), bayes.Config{X: x, S: sv, MinDev: md}})
				}
			}
		}
	}
	if o.Grid == "mincount" {
		for _, mc := range []int{1, 2, 3, 5} {
			for _, md := range []float64{0.2, 0.3, 0.375} {
				for _, sv := range []float64{0.1, 0.45, 1} {
					vs = append(vs, variant{fmt.Sprintf("min_count=%d min_dev=%g s=%g", mc, md, sv), bayes.Config{MinCount: mc, MinDev: md, S: sv}})
				}
			}
		}
	}
	if o.Grid == "final" {
		for _, p := range [][2]float64{{0.1, 0.375}, {0.05, 0.3}, {0.05, 0.2}, {0.05, 0.1}, {0.1, 0.1}, {0.1, 0.3}} {
			vs = append(vs, variant{fmt.Sprintf("s=%g min_dev=%g", p[0], p[1]), bayes.Config{S: p[0], MinDev: p[1]}})
		}
	}
	if o.Grid == "" || o.Grid == "params" {
		vs = append(vs, paramVariants()...)
	}
	if o.Grid == "esf" {
		// the grid behind the esf default (10-fold on the train split)
		vs = append(vs, variant{"esf=1 (off)", bayes.Config{ESF: 1}})
		for _, e := range []float64{0.3, 0.2, 0.15, 0.1} {
			for _, mt := range []int{150, 400} {
				for _, sv := range []float64{0.05, 0.1, 0.2} {
					vs = append(vs, variant{fmt.Sprintf("esf=%g max_tokens=%d s=%g", e, mt, sv), bayes.Config{ESF: e, MaxTokens: mt, S: sv}})
				}
			}
		}
	}
	if o.Grid == "esf-tune" {
		// TUNE and the prior with the esf default
		vs = append(vs, variant{"default", bayes.Config{}})
		for _, tp := range []int{-1, 1, 3, 6} {
			for _, tm := range []float64{0.01, 0.001, 0.0001} {
				vs = append(vs, variant{fmt.Sprintf("tune_passes=%d tune_margin=%g", tp, tm), bayes.Config{TunePasses: tp, TuneMargin: tm}})
			}
		}
		for _, md := range []float64{0.3, 0.35, 0.4} {
			vs = append(vs, variant{fmt.Sprintf("min_dev=%g", md), bayes.Config{MinDev: md}})
		}
	}
	if o.Grid == "header-weight" {
		// the clues of the header fields weighted against the body's
		vs = append(vs, variant{"default", bayes.Config{}})
		for _, w := range []float64{1.25, 1.5, 1.75, 2, 2.5, 3} {
			vs = append(vs, variant{fmt.Sprintf("header_weight=%g", w), bayes.Config{HeaderWeight: w}})
		}
		for _, w := range []float64{1.5, 1.75, 2} {
			for _, e := range []float64{0.1, 0.2} {
				vs = append(vs, variant{fmt.Sprintf("header_weight=%g esf=%g", w, e), bayes.Config{HeaderWeight: w, ESF: e}})
			}
		}
	}
	if o.Grid == "round7" {
		vs = append(vs, round7Variants()...)
	}
	if o.Grid == "round8b" {
		// the shape of the Reply-To address (kept as an option, off); the other
		// variants of that round are in the history (af6a4b0 and the README)
		vs = append(vs, variant{"default", bayes.Config{}},
			variant{"shape_reply_to", bayes.Config{Tokenizer: bayes.TokenizerConfig{ShapeReplyTo: true}}})
	}
	if o.Grid == "features" {
		vs = append(vs, newFeatureVariants()...)
	}
	cuts := []float64{0.2, 0.45, 0.5, 0.55, 0.9}
	fmt.Fprintf(out, "%d spam, %d ham, %d folds; FP/FN at cut-offs %v\n", len(spam), len(ham), o.Folds, cuts)
	cache := map[string][2][]bayes.Update{}
	for _, v := range vs {
		fp := v.cfg.Tokenizer.Fingerprint()
		hs, ok := cache[fp]
		if !ok {
			tok := bayes.NewTokenizer(v.cfg.Tokenizer)
			hs = [2][]bayes.Update{Tokenize(tok, spam), Tokenize(tok, ham)}
			cache[fp] = hs
		}
		scores, _, _, err := KFold(ctx, v.cfg, hs[0], hs[1], o.Folds)
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, c := range cuts {
			fpn, fnn := 0, 0
			for _, s := range scores {
				if s.Spam && s.Prob < c {
					fnn++
				}
				if !s.Spam && s.Prob >= c {
					fpn++
				}
			}
			fmt.Fprintf(&b, " %d/%d", fpn, fnn)
		}
		fmt.Fprintf(out, "%-40s 1-AUC=%.6f  FP/FN:%s  FN at 1/3/5 FP:%s\n", v.name, 1-AUC(scores), b.String(), fnAtFP(scores, 1, 3, 5))
	}
	return nil
}

// fnAtFP returns the false negatives at the cut-offs that let through each given
// number of false positives (the ham scores sorted, the cut-off just above the
// (k+1)-th highest).
func fnAtFP(scores []Scored, fps ...int) string {
	var hs []float64
	for _, s := range scores {
		if !s.Spam {
			hs = append(hs, s.Prob)
		}
	}
	slices.Sort(hs)
	var b strings.Builder
	for _, k := range fps {
		if k >= len(hs) {
			continue
		}
		cut := hs[len(hs)-1-k]
		fn := 0
		for _, s := range scores {
			if s.Spam && s.Prob <= cut {
				fn++
			}
		}
		fmt.Fprintf(&b, " %d", fn)
	}
	return b.String()
}

func newFeatureVariants() []variant {
	base := bayes.Config{}
	v := []variant{{"default", base}}
	add := func(name string, f func(*bayes.TokenizerConfig)) {
		c := base
		f(&c.Tokenizer)
		v = append(v, variant{name, c})
	}
	add("caps", func(t *bayes.TokenizerConfig) { t.Caps = true })
	add("subject_words", func(t *bayes.TokenizerConfig) { t.SubjectWords = true })
	add("keep_case", func(t *bayes.TokenizerConfig) { t.KeepCase = true })
	add("counts", func(t *bayes.TokenizerConfig) { t.Counts = true })
	add("keep_case+counts", func(t *bayes.TokenizerConfig) { t.KeepCase = true; t.Counts = true })
	return v
}

// round7Variants are the tokenizer variants of the round after the esf default: list
// fields, the From display name as one token, part type/charset/encoding combinations.
func round7Variants() []variant {
	v := []variant{{"default", bayes.Config{}}}
	list := append(slices.Clone(bayes.DefaultHeaders), "list-unsubscribe", "list-subscribe",
		"list-post", "list-help", "list-archive", "list-owner", "mailing-list",
		"x-mailing-list", "x-beenthere", "x-loop", "errors-to")
	add := func(name string, f func(*bayes.TokenizerConfig)) {
		var c bayes.Config
		f(&c.Tokenizer)
		v = append(v, variant{name, c})
	}
	add("list_fields", func(t *bayes.TokenizerConfig) { t.Headers = list })
	add("from_name", func(t *bayes.TokenizerConfig) { t.FromName = true })
	add("part_combos", func(t *bayes.TokenizerConfig) { t.PartCombos = true })
	add("list_fields+from_name+part_combos", func(t *bayes.TokenizerConfig) {
		t.Headers = list
		t.FromName = true
		t.PartCombos = true
	})
	return v
}
