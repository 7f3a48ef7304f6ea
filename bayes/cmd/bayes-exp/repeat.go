package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bayes/bayescli"
	"github.com/portcullis-mail/portcullis/bayes/internal/fisher"
)

// foldAssignment returns the fold of each message of the spam-then-ham list in fold
// assignment a: a = 0 is the usual one (index within its class mod k, as
// bayescli.KFold), a ≥ 1 the same after shuffling each class with rand.NewPCG(a, a).
func foldAssignment(a, nspam, nham, k int) []int {
	f := make([]int, nspam+nham)
	if a == 0 {
		for i := range f {
			f[i] = foldOf(i, nspam, k)
		}
		return f
	}
	r := rand.New(rand.NewPCG(uint64(a), uint64(a)))
	for pos, i := range r.Perm(nspam) {
		f[i] = pos % k
	}
	for pos, i := range r.Perm(nham) {
		f[nspam+i] = pos % k
	}
	return f
}

// oldMidWeights are the mid_weights before the repeated cross-validation (with
// mid_band 0.2), fitted on the outputs of fold assignment 0 only.
var oldMidWeights = [5]float64{-2.50, 2.54, -0.597, 2.39, -2.72}

// cvRec is what one cross-validated message gives: the classifier's score with the
// middle band off and with the defaults, and the four tails of the band's z.
type cvRec struct {
	chi, def float64
	lq       [4]float64 // ln Q_S,body, ln Q_H,body, ln Q_S,header, ln Q_H,header
	clues    int
	// candidate extra features of the band's z (-midfeat)
	nBody, nHdr int        // body and header clues
	unk, once   float64    // share of the message's tokens never trained / in one trained message
	unkP, onceP [2]float64 // the same of its body and of its header tokens
	nbLO        [2]float64 // esf·Σ ln(f/(1−f)) of the body and of the header clues
	spammy      float64    // share of the clues with f > 0.5
}

// cvRecords cross-validates the classifier of base (mid_band and mid_weights as the
// defaults) over the fold assignment folds, training with the TUNE passes of tune's
// classifier (its clue selection), and records every held-out message.
func cvRecords(ctx context.Context, base, tune bayes.Config, ups []bayes.Update, nspam int, folds []int, k int) []cvRec {
	recs := make([]cvRec, len(ups))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for f := 0; f < k; f++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(f int) {
			defer func() { <-sem; wg.Done() }()
			store := bayes.NewMemStore()
			def, err := bayes.New(base, store)
			if err != nil {
				log.Fatal(err)
			}
			offCfg := base
			offCfg.MidBand = -1
			off, err := bayes.New(offCfg, store)
			if err != nil {
				log.Fatal(err)
			}
			tuner, err := bayes.New(tune, store)
			if err != nil {
				log.Fatal(err)
			}
			trainFold(ctx, store, tuner, ups, nspam, func(i int) bool { return folds[i] != f })
			esf := def.Config().ESF
			for i, u := range ups {
				if folds[i] != f {
					continue
				}
				sd, err := def.ClassifyTokens(ctx, u.Tokens, u.Header, false)
				if err != nil {
					log.Fatal(err)
				}
				so, err := off.ClassifyTokens(ctx, u.Tokens, u.Header, true)
				if err != nil {
					log.Fatal(err)
				}
				hdr := make(map[uint64]bool, u.Header)
				for _, h := range u.Tokens[:u.Header] {
					hdr[h] = true
				}
				var bf, hf []float64
				for _, c := range so.Clues {
					if hdr[c.Hash] {
						hf = append(hf, c.Prob)
					} else {
						bf = append(bf, c.Prob)
					}
				}
				r := cvRec{chi: so.Prob, def: sd.Prob, clues: len(so.Clues), nBody: len(bf), nHdr: len(hf)}
				r.lq[0], r.lq[1] = partTails(bf, esf)
				r.lq[2], r.lq[3] = partTails(hf, esf)
				cts := make([]bayes.Counts, len(u.Tokens))
				if _, err := store.Lookup(ctx, u.Tokens, cts); err != nil {
					log.Fatal(err)
				}
				var nP [2]float64
				for j, ct := range cts {
					p := 0 // body
					if j < u.Header {
						p = 1
					}
					nP[p]++
					switch ct.Spam + ct.Ham {
					case 0:
						r.unk++
						r.unkP[p]++
					case 1:
						r.once++
						r.onceP[p]++
					}
				}
				if len(cts) > 0 {
					r.unk /= float64(len(cts))
					r.once /= float64(len(cts))
				}
				for p := range nP {
					if nP[p] > 0 {
						r.unkP[p] /= nP[p]
						r.onceP[p] /= nP[p]
					}
				}
				for j, fs := range [][]float64{bf, hf} {
					for _, f := range fs {
						r.nbLO[j] += esf * math.Log(f/(1-f))
						if f > 0.5 {
							r.spammy++
						}
					}
				}
				if r.clues > 0 {
					r.spammy /= float64(r.clues)
				}
				recs[i] = r
			}
		}(f)
	}
	wg.Wait()
	return recs
}

// partTails is ln Q_S and ln Q_H of the clues fs with the esf, as the classifier's
// middle band takes them.
func partTails(fs []float64, esf float64) (lqS, lqH float64) {
	var lnS, lnH float64
	for _, f := range fs {
		lnS += math.Log(1 - f)
		lnH += math.Log(f)
	}
	return fisher.Tails(lnS, lnH, float64(len(fs)), esf)
}

// midX is the band's feature vector: the four tail features, then the extra ones
// of feat ("" none; "+"-separated names of -midfeat).
func midX(r cvRec, feat string) []float64 {
	x := []float64{math.Log1p(-r.lq[0]), math.Log1p(-r.lq[1]), math.Log1p(-r.lq[2]), math.Log1p(-r.lq[3])}
	if feat == "" {
		return x
	}
	for _, f := range strings.Split(feat, "+") {
		switch f {
		case "n": // number of body and of header clues
			x = append(x, math.Log1p(float64(r.nBody)), math.Log1p(float64(r.nHdr)))
		case "unk": // share of the tokens never trained
			x = append(x, r.unk)
		case "once": // share of the tokens in one trained message
			x = append(x, r.once)
		case "unkp": // share of the body and of the header tokens never trained
			x = append(x, r.unkP[0], r.unkP[1])
		case "oncep": // share of the body and of the header tokens in one trained message
			x = append(x, r.onceP[0], r.onceP[1])
		case "onceb": // of the body tokens only
			x = append(x, r.onceP[0])
		case "oncelog": // ln of the share of the tokens in one trained message (+0.01)
			x = append(x, math.Log(r.once+0.01))
		case "onceknown": // share of the trained tokens that are in one trained message
			x = append(x, r.once/max(1-r.unk, 1e-9))
		case "nb": // naive-Bayes log odds of the body and of the header clues, times esf
			x = append(x, r.nbLO[0], r.nbLO[1])
		case "nbasinh": // the same, asinh
			x = append(x, math.Asinh(r.nbLO[0]), math.Asinh(r.nbLO[1]))
		case "share": // share of the clues that are spammy
			x = append(x, r.spammy)
		default:
			log.Fatalf("unknown -midfeat feature %q", f)
		}
	}
	return x
}

// midScore is the classifier's score with mid_band band and mid_weights c over the
// features feat.
func midScore(r cvRec, band float64, c []float64, feat string) float64 {
	if r.clues == 0 {
		return 0.5
	}
	if band <= 0 || r.chi <= 0.5-band || r.chi >= 0.5+band {
		return r.chi
	}
	return 0.5 - band + 2*band*sigmoid(dot(c, midX(r, feat)))
}

type opPoint struct {
	oneMinusAUC   float64
	fp, fn        int
	fn1, fn3, fn5 int
}

func measure(recs []cvRec, nspam int, score func(i int) float64) opPoint {
	var o opPoint
	sc := make([]bayescli.Scored, len(recs))
	var hs, ss []float64
	for i, r := range recs {
		p := score(i)
		spam := i < nspam
		sc[i] = bayescli.Scored{Prob: p, Spam: spam}
		verdict := p >= 0.5 && r.clues > 0
		if spam {
			ss = append(ss, p)
			if !verdict {
				o.fn++
			}
		} else {
			hs = append(hs, p)
			if verdict {
				o.fp++
			}
		}
	}
	sort.Float64s(hs)
	o.fn1, o.fn3, o.fn5 = fnAtFP(hs, ss, 1), fnAtFP(hs, ss, 3), fnAtFP(hs, ss, 5)
	o.oneMinusAUC = 1 - bayescli.AUC(sc)
	return o
}

// summary prints one variant over the fold assignments: mean and range of each
// figure, then the figures of each assignment.
func summary(name string, ops []opPoint) {
	var auc []float64
	var fp, fn, f1, f3, f5 []float64
	var per []string
	for _, o := range ops {
		auc = append(auc, o.oneMinusAUC)
		fp, fn = append(fp, float64(o.fp)), append(fn, float64(o.fn))
		f1, f3, f5 = append(f1, float64(o.fn1)), append(f3, float64(o.fn3)), append(f5, float64(o.fn5))
		per = append(per, fmt.Sprintf("%d/%d %d/%d/%d", o.fp, o.fn, o.fn1, o.fn3, o.fn5))
	}
	mr := func(v []float64, f string) string {
		lo, hi, s := v[0], v[0], 0.0
		for _, x := range v {
			lo, hi, s = min(lo, x), max(hi, x), s+x
		}
		return fmt.Sprintf(f+" ("+f+"–"+f+")", s/float64(len(v)), lo, hi)
	}
	fmt.Printf("%-50s 1-AUC %s  FP %s FN %s  FN@1/3/5 %s %s %s  [%s]\n", name,
		mr(auc, "%.6f"), mr(fp, "%.2f"), mr(fn, "%.1f"), mr(f1, "%.1f"), mr(f3, "%.1f"), mr(f5, "%.1f"),
		strings.Join(per, ", "))
}

// repeatedCV cross-validates the classifier over R fold assignments (the usual one
// and R − 1 shuffled ones, foldAssignment) and compares the middle band off, with the
// default weights, and with weights refitted on the pooled cross-validated outputs of
// all assignments. The refits are nested: the weights that score fold f of
// assignment a are fitted on the outputs (in every assignment) of the messages not
// in that fold, so no held-out message's class is seen by the fit. The last rows are
// the weights fitted on all outputs, as a default would be (not nested).
//
// feats are sets of extra features of the band's z (midX) to refit with besides the
// four tails: each set's pooled nested and all-output rows follow the others.
func repeatedCV(ctx context.Context, base, tune bayes.Config, spam, ham [][]byte, k, R int, bands, hws []float64, inBandToo bool, feats []string) {
	tok := bayes.NewTokenizer(base.Tokenizer)
	sh, hh := bayescli.Tokenize(tok, spam), bayescli.Tokenize(tok, ham)
	ups := append(append([]bayes.Update{}, sh...), hh...)
	ns := len(sh)
	folds := make([][]int, R)
	recs := make([][]cvRec, R)
	for a := 0; a < R; a++ {
		folds[a] = foldAssignment(a, len(sh), len(hh), k)
		recs[a] = cvRecords(ctx, base, tune, ups, ns, folds[a], k)
		// the re-computed middle band must be the classifier's
		bad := 0
		for _, r := range recs[a] {
			if math.Abs(midScore(r, bayes.DefaultMidBand, bayes.DefaultMidWeights[:], "")-r.def) > 1e-9 {
				bad++
			}
		}
		if bad > 0 {
			log.Printf("assignment %d: %d messages differ from the classifier's score", a, bad)
		}
		log.Printf("assignment %d done", a)
	}
	each := func(score func(a, i int) float64) []opPoint {
		ops := make([]opPoint, R)
		for a := 0; a < R; a++ {
			ops[a] = measure(recs[a], ns, func(i int) float64 { return score(a, i) })
		}
		return ops
	}
	summary("mid_band off", each(func(a, i int) float64 { return recs[a][i].chi }))
	summary("defaults (the classifier)", each(func(a, i int) float64 { return recs[a][i].def }))
	summary("previous defaults (band 0.2, weights fitted on assignment 0)", each(func(a, i int) float64 {
		return midScore(recs[a][i], 0.2, oldMidWeights[:], "")
	}))
	for _, band := range bands {
		if band == bayes.DefaultMidBand {
			continue
		}
		summary(fmt.Sprintf("default weights, band %g", band), each(func(a, i int) float64 {
			return midScore(recs[a][i], band, bayes.DefaultMidWeights[:], "")
		}))
	}

	// fit fits the weights on the outputs of the assignments as, leaving out the
	// messages for which skip is true; inBand: only those inside the band.
	fit := func(as []int, skip func(i int) bool, hw, band float64, inBand bool, feat string) []float64 {
		var X [][]float64
		var y, wt []float64
		for _, b := range as {
			for i, r := range recs[b] {
				if skip(i) || (inBand && (r.clues == 0 || r.chi <= 0.5-band || r.chi >= 0.5+band)) {
					continue
				}
				X = append(X, midX(r, feat))
				if i < ns {
					y, wt = append(y, 1), append(wt, 1)
				} else {
					y, wt = append(y, 0), append(wt, hw)
				}
			}
		}
		return fitLR(X, y, wt, 1)
	}
	all := make([]int, R)
	for a := range all {
		all[a] = a
	}
	// every combination of fit (all messages, then inside the band), extra features
	// ("" none), band and ham weight
	variants := func(feats []string) []variant {
		var vs []variant
		for _, inBand := range []bool{false, true} {
			if inBand && !inBandToo {
				break
			}
			for _, feat := range feats {
				for _, band := range bands {
					for _, hw := range hws {
						vs = append(vs, variant{hw: hw, band: band, inBand: inBand, feat: feat})
					}
				}
			}
		}
		return vs
	}
	vs := variants([]string{""})
	nested := func(v variant, pooled bool) []opPoint {
		ops := make([]opPoint, R)
		scores := make([][]float64, R)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		for a := 0; a < R; a++ {
			scores[a] = make([]float64, len(recs[a]))
			for f := 0; f < k; f++ {
				wg.Add(1)
				sem <- struct{}{}
				go func(a, f int) {
					defer func() { <-sem; wg.Done() }()
					as := []int{a}
					if pooled {
						as = all
					}
					c := fit(as, func(i int) bool { return folds[a][i] == f }, v.hw, v.band, v.inBand, v.feat)
					for i, r := range recs[a] {
						if folds[a][i] == f {
							scores[a][i] = midScore(r, v.band, c, v.feat)
						}
					}
				}(a, f)
			}
		}
		wg.Wait()
		for a := 0; a < R; a++ {
			ops[a] = measure(recs[a], ns, func(i int) float64 { return scores[a][i] })
		}
		return ops
	}
	name := func(v variant) string {
		s := fmt.Sprintf("band %g, ham weight %g", v.band, v.hw)
		if v.inBand {
			s += ", fit in band"
		}
		if v.feat != "" {
			s += ", +" + v.feat
		}
		return s
	}
	fmt.Println("-- single: refits on one assignment's other folds (nested, as before)")
	for _, v := range vs {
		if !v.inBand {
			summary(name(v), nested(v, false))
		}
	}
	fmt.Println("-- pooled: refits on the outputs of all assignments (nested: held-out fold left out of every assignment)")
	for _, v := range vs {
		summary(name(v), nested(v, true))
	}
	fitAll := func(vs []variant) {
		for _, v := range vs {
			c := fit(all, func(int) bool { return false }, v.hw, v.band, v.inBand, v.feat)
			summary(fmt.Sprintf("%s %.4g", name(v), c), each(func(a, i int) float64 { return midScore(recs[a][i], v.band, c, v.feat) }))
		}
	}
	fmt.Println("-- all: weights fitted on all pooled outputs (not nested)")
	fitAll(vs)
	if len(feats) == 0 {
		return
	}
	fvs := variants(feats)
	fmt.Println("-- extra features of z (-midfeat), pooled nested")
	for _, v := range fvs {
		summary(name(v), nested(v, true))
	}
	fmt.Println("-- extra features of z (-midfeat), fitted on all pooled outputs (not nested)")
	fitAll(fvs)
}

// variant is one refit of the middle band's weights in repeatedCV.
type variant struct {
	hw, band float64
	inBand   bool   // fitted on the messages inside the band only
	feat     string // extra features of z (midX)
}

// floats parses a comma-separated list of numbers.
func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			log.Fatalf("bad number %q in %q", f, s)
		}
		out = append(out, v)
	}
	return out
}
