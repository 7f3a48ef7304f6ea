// Command bayes-exp compares other models with the bayes package's classifier by k-fold
// cross-validation on one (training) corpus: logistic regression on the same token
// hashes (AdaGrad, a few passes), its ensembles with the chi-square score, and other
// ways of combining the naive-Bayes token probabilities. It is the measurement behind
// the "what was tried" table of bayes/README.md; it must only be given the training
// split.
//
//	go run ./bayes/cmd/bayes-exp -corpus .cache/sa-corpus [-osb 2] [-bigrams] [-fields] [-combine] [-midband] [-repeat R [-bodymin N] [-tunebodymin N] [-mindev D] [-s S] [-midfeat SETS]]
//
// For each model it prints 1 − ROC area and, for the cut-offs that let through 0, 1, 3
// and 5 false positives, the false negatives. -fields compares ways of weighting
// header clues, -combine ways of combining the clues (the middle band's weights, by
// nested cross-validation), -midband the classifier at several mid_band widths,
// -repeat R the middle band over R fold assignments (the usual one and R − 1 shuffled
// ones), with weights refitted on the pooled outputs of all of them (nested).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bayes/bayescli"
)

func load(dir string) [][]byte {
	ents, err := os.ReadDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			log.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

type example struct {
	h    []uint64
	y    float64 // 1 spam, 0 ham
	fold int
}

func report(name string, scores []bayescli.Scored) {
	var hs, ss []float64
	for _, s := range scores {
		if s.Spam {
			ss = append(ss, s.Prob)
		} else {
			hs = append(hs, s.Prob)
		}
	}
	sort.Float64s(hs)
	var b string
	for _, fp := range []int{0, 1, 3, 5} {
		b += fmt.Sprintf(" fp%d:fn=%d", fp, fnAtFP(hs, ss, fp))
	}
	fmt.Printf("%-44s 1-AUC=%.6f %s\n", name, 1-bayescli.AUC(scores), b)
}

// fnAtFP is the number of spam scores ss at or below the cut-off that lets through
// k ham: the (k+1)-th highest of the sorted ham scores hs.
func fnAtFP(hs, ss []float64, k int) int {
	cut := hs[len(hs)-1-k]
	n := 0
	for _, s := range ss {
		if s <= cut {
			n++
		}
	}
	return n
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// logReg trains logistic regression with AdaGrad on binary features hashed into
// 2^bits weights, each message's features scaled by 1/sqrt(its token count).
func logReg(train []example, epochs int, eta float64, bits uint) func([]uint64) float64 {
	w := make([]float64, 1<<bits)
	g2 := make([]float64, 1<<bits)
	mask := uint64(1<<bits - 1)
	var b, bg float64 = 0, 1e-9
	r := rand.New(rand.NewSource(1))
	idx := r.Perm(len(train))
	for e := 0; e < epochs; e++ {
		for _, i := range idx {
			x := train[i]
			sc := 1 / math.Sqrt(float64(len(x.h)+1))
			z := b
			for _, h := range x.h {
				z += w[h&mask] * sc
			}
			g := sigmoid(z) - x.y
			bg += g * g
			b -= eta * g / math.Sqrt(bg)
			for _, h := range x.h {
				j := h & mask
				gj := g * sc
				g2[j] += gj * gj
				w[j] -= eta * gj / math.Sqrt(g2[j]+1e-9)
			}
		}
		r.Shuffle(len(idx), func(a, c int) { idx[a], idx[c] = idx[c], idx[a] })
	}
	return func(h []uint64) float64 {
		z := b
		sc := 1 / math.Sqrt(float64(len(h)+1))
		for _, t := range h {
			z += w[t&mask] * sc
		}
		return sigmoid(z)
	}
}

func main() {
	corpus := flag.String("corpus", ".cache/sa-corpus", "corpus export (its train split is used)")
	k := flag.Int("k", 10, "folds")
	bigrams := flag.Bool("bigrams", false, "tokenizer with adjacent word pairs")
	osb := flag.Int("osb", 0, "tokenizer with orthogonal sparse bigrams up to this distance")
	fields := flag.Bool("fields", false, "compare ways of weighting and capping header clues instead")
	combineF := flag.Bool("combine", false, "compare ways of combining the clues instead")
	midF := flag.Bool("midband", false, "cross-validate the classifier's mid_band settings instead")
	repeat := flag.Int("repeat", 0, "repeated cross-validation over this many fold assignments (the usual and shuffled ones) of the middle band's weights instead")
	rBands := flag.String("bands", "0.1,0.15,0.2,0.25", "with -repeat: the mid_band widths of the refits")
	rHW := flag.String("hamweights", "3,5,7,10,14,20", "with -repeat: the ham weights of the refits")
	rInBand := flag.Bool("inband", false, "with -repeat: also refits on the messages inside the band only")
	rBodyMin := flag.Int("bodymin", 0, "with -repeat: the classifier's body_min_count")
	rTuneBodyMin := flag.Int("tunebodymin", -1, "with -repeat: body_min_count of the TUNE passes (-1: as -bodymin)")
	rMinDev := flag.Float64("mindev", 0, "with -repeat: the classifier's min_dev (0: default)")
	rS := flag.Float64("s", 0, "with -repeat: the classifier's s (0: default)")
	rFeat := flag.String("midfeat", "", "with -repeat: comma-separated sets of extra features of the middle band's z to refit with, each +-joined from n (log1p of the body and header clues), unk / once (share of the tokens never trained / in one trained message), unkp / oncep (the same of the body and of the header tokens apart), onceb (of the body tokens), oncelog (ln(once + 0.01)), onceknown (once of the trained tokens), nb / nbasinh (esf·naive-Bayes log odds of body and header clues / its asinh), share (share of spammy clues)")
	flag.Parse()
	ctx := context.Background()
	spam := load(filepath.Join(*corpus, "train/spam"))
	ham := load(filepath.Join(*corpus, "train/ham"))
	if *repeat > 0 {
		base := bayes.Config{BodyMinCount: *rBodyMin, MinDev: *rMinDev, S: *rS}
		tune := base
		if *rTuneBodyMin >= 0 {
			tune.BodyMinCount = *rTuneBodyMin
		}
		var feats []string
		if *rFeat != "" {
			feats = strings.Split(*rFeat, ",")
		}
		repeatedCV(ctx, base, tune, spam, ham, *k, *repeat, floats(*rBands), floats(*rHW), *rInBand, feats)
		return
	}
	if *midF {
		midBandKFold(ctx, spam, ham, *k)
		return
	}
	if *combineF {
		combineExperiments(ctx, spam, ham, *k)
		return
	}
	if *fields {
		fieldExperiments(ctx, spam, ham, *k)
		return
	}
	cfg := bayes.Config{}
	cfg.Tokenizer.Bigrams = *bigrams
	cfg.Tokenizer.OSB = *osb
	tok := bayes.NewTokenizer(cfg.Tokenizer)
	sh, hh := bayescli.Tokenize(tok, spam), bayescli.Tokenize(tok, ham)
	var all []example
	for i, u := range sh {
		all = append(all, example{u.Tokens, 1, i % *k})
	}
	for i, u := range hh {
		all = append(all, example{u.Tokens, 0, i % *k})
	}
	noTune := cfg
	noTune.TunePasses = -1
	base, _, _, err := bayescli.KFold(ctx, noTune, sh, hh, *k)
	if err != nil {
		log.Fatal(err)
	}
	report("chi2 (no tune passes)", base)
	chi, _, _, err := bayescli.KFold(ctx, cfg, sh, hh, *k)
	if err != nil {
		log.Fatal(err)
	}
	report("chi2 (default: 3 tune passes)", chi)

	// naive-Bayes log odds of the same clues, instead of chi-square combining
	nbz := make([]float64, len(all))
	for f := 0; f < *k; f++ {
		type cnt struct{ s, h float64 }
		m := map[uint64]cnt{}
		var ns, nh float64
		for _, e := range all {
			if e.fold == f {
				continue
			}
			ns += e.y
			nh += 1 - e.y
			for _, h := range e.h {
				c := m[h]
				c.s += e.y
				c.h += 1 - e.y
				m[h] = c
			}
		}
		for i, e := range all {
			if e.fold != f {
				continue
			}
			for _, h := range e.h {
				c := m[h]
				n := c.s + c.h
				if n == 0 {
					continue
				}
				b, g := c.s/ns, c.h/nh
				fv := (bayes.DefaultS*0.5 + n*b/(b+g)) / (bayes.DefaultS + n)
				if math.Abs(fv-0.5) >= bayes.DefaultMinDev {
					nbz[i] += math.Log(fv / (1 - fv))
				}
			}
		}
	}
	sc := make([]bayescli.Scored, len(all))
	for i, e := range all {
		sc[i] = bayescli.Scored{Prob: sigmoid(nbz[i] / math.Sqrt(float64(len(e.h)))), Spam: e.y == 1}
	}
	report("naive-Bayes log odds / sqrt(n)", sc)

	for _, p := range []struct {
		epochs int
		eta    float64
	}{{3, 0.5}, {5, 1}, {10, 1}} {
		lr := make([]bayescli.Scored, len(all))
		for f := 0; f < *k; f++ {
			var tr []example
			for _, e := range all {
				if e.fold != f {
					tr = append(tr, e)
				}
			}
			m := logReg(tr, p.epochs, p.eta, 22)
			for i, e := range all {
				if e.fold == f {
					lr[i] = bayescli.Scored{Prob: m(e.h), Spam: e.y == 1}
				}
			}
		}
		report(fmt.Sprintf("logistic regression, %d passes, eta %g", p.epochs, p.eta), lr)
		for _, a := range []float64{3, 10, 30} {
			for i, e := range all {
				z := math.Log(lr[i].Prob/(1-lr[i].Prob)) + a*(chi[i].Prob-0.5)
				sc[i] = bayescli.Scored{Prob: sigmoid(z), Spam: e.y == 1}
			}
			report(fmt.Sprintf("  + %g x (chi2 - 0.5)", a), sc)
		}
	}
}
