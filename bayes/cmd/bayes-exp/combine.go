package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"slices"
	"sort"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bayes/bayescli"
	"github.com/portcullis-mail/portcullis/bayes/internal/fisher"
)

// combineExperiments measures, by k-fold on the training split, other ways of combining
// the clues of a message than the package's chi-square (1 + S − H)/2: a logistic
// combination of the tail log-probabilities of the header and body clues (its few
// parameters fitted by nested cross-validation: on the other folds' outputs, scoring
// the held-out fold), Robinson's geometric-mean combining, a tie-break of the unsure
// band by a second statistic, and clue selections (min_dev per kind, body hapaxes).
// Training (with the TUNE passes) is the package's own with its defaults; the token
// counts each held-out message sees are recorded and the clues combined here, so the
// first two rows must match: the classifier without its middle band (which this
// experiment came before; -repeat measures the band on the classifier's own scores)
// and the chi-square re-combined here. The TUNE passes look only at the ends of the
// scale, which the band does not change.
func combineExperiments(ctx context.Context, spam, ham [][]byte, k int) {
	cfg := bayes.Config{MidBand: -1}
	tok := bayes.NewTokenizer(cfg.Tokenizer)
	sh, hh := bayescli.Tokenize(tok, spam), bayescli.Tokenize(tok, ham)
	ups := append(append([]bayes.Update{}, sh...), hh...)
	msgs := make([]cmsg, len(ups))
	ref := make([]bayescli.Scored, len(ups))
	for f := 0; f < k; f++ {
		store := bayes.NewMemStore()
		c, err := bayes.New(cfg, store)
		if err != nil {
			log.Fatal(err)
		}
		trainFold(ctx, store, c, ups, len(sh), func(i int) bool { return foldOf(i, len(sh), k) != f })
		for i, u := range ups {
			if foldOf(i, len(sh), k) != f {
				continue
			}
			counts := make([]bayes.Counts, len(u.Tokens))
			tot, err := store.Lookup(ctx, u.Tokens, counts)
			if err != nil {
				log.Fatal(err)
			}
			m := cmsg{spam: i < len(sh), fold: f, tot: tot}
			for j, h := range u.Tokens {
				ct := counts[j]
				if ct.Spam+ct.Ham == 0 {
					continue
				}
				fv := fisher.Robinson(ct.Spam, ct.Ham, tot.Spam, tot.Ham, bayes.DefaultS, bayes.DefaultX)
				if math.Abs(fv-0.5) < 0.2 {
					continue
				}
				m.toks = append(m.toks, ctok{h: h, f: fv, n: ct.Spam + ct.Ham, hdr: j < u.Header})
			}
			msgs[i] = m
			sc, err := c.ClassifyTokens(ctx, u.Tokens, u.Header, false)
			if err != nil {
				log.Fatal(err)
			}
			ref[i] = bayescli.Scored{Prob: sc.Prob, Spam: m.spam}
		}
	}
	report2("classifier (mid_band off)", ref)
	def := selection{minDevB: 0.375, minDevH: 0.375, maxTok: 400}
	feats := make([]features, len(msgs))
	score := func(sel selection, esf, w float64, f func(features) float64) []bayescli.Scored {
		out := make([]bayescli.Scored, len(msgs))
		for i, m := range msgs {
			feats[i] = sel.features(m, esf, w)
			out[i] = bayescli.Scored{Prob: f(feats[i]), Spam: m.spam}
		}
		return out
	}
	chi := func(x features) float64 { return x.chi }
	report2("re-combined default", score(def, 0.15, 1.5, chi))

	// the tail log-ratio: same side of 0.5 as the default, other ranking
	report2("Q_H/(Q_H+Q_S)", score(def, 0.15, 1.5, func(x features) float64 { return sigmoid(x.lqH - x.lqS) }))
	// Robinson's geometric-mean combining
	report2("Robinson geometric mean", score(def, 1, 1.5, func(x features) float64 { return x.geo }))
	// naive-Bayes log odds of the clues
	report2("NB log odds (header 1.5)", score(def, 1, 1.5, func(x features) float64 { return sigmoid(x.nb) }))

	// tie-break of the band by a second statistic
	for _, band := range [][2]float64{{0.45, 0.55}, {0.4, 0.6}, {0.3, 0.7}} {
		for _, st := range []struct {
			name string
			z    func(features) float64
		}{
			{"NB log odds", func(x features) float64 { return x.nb }},
			{"NB log odds/sqrt n", func(x features) float64 { return x.nb / math.Sqrt(max(1, x.n)) }},
		} {
			lo, hi := band[0], band[1]
			report2(fmt.Sprintf("band %g-%g by %s", lo, hi, st.name), score(def, 0.15, 1.5, func(x features) float64 {
				if x.chi <= lo || x.chi >= hi {
					return x.chi
				}
				return lo + (hi-lo)*sigmoid(st.z(x))
			}))
		}
	}

	// clue selection
	for _, md := range [][2]float64{{0.35, 0.375}, {0.4, 0.375}, {0.375, 0.3}, {0.375, 0.35}, {0.375, 0.4}, {0.375, 0.45}} {
		sel := def
		sel.minDevB, sel.minDevH = md[0], md[1]
		report2(fmt.Sprintf("min_dev body %g header %g", md[0], md[1]), score(sel, 0.15, 1.5, chi))
	}
	for _, hap := range [][2]bool{{true, false}, {false, true}, {true, true}} {
		sel := def
		sel.noHapaxB, sel.noHapaxH = hap[0], hap[1]
		report2(fmt.Sprintf("no hapax: body %v header %v", hap[0], hap[1]), score(sel, 0.15, 1.5, chi))
	}
	// log sums and degrees of freedom scaled apart
	for _, d := range []float64{0.1, 0.125, 0.175, 0.2} {
		sel := def
		sel.dofESF = d
		report2(fmt.Sprintf("esf 0.15 on the logs, %g on the dof", d), score(sel, 0.15, 1.5, chi))
	}

	// logistic combinations, fitted by nested cross-validation
	type lrv struct {
		name string
		x    func(features) []float64
	}
	ash := math.Asinh
	l1p := func(v float64) float64 { return math.Log1p(-v) }
	lrs := []lrv{
		{"LR: asinh lqSb, lqHb, lqSh, lqHh", func(x features) []float64 {
			return []float64{ash(x.lqSb), ash(x.lqHb), ash(x.lqSh), ash(x.lqHh)}
		}},
		{"LR: ln(1-lq) Sb, Hb, Sh, Hh", func(x features) []float64 {
			return []float64{l1p(x.lqSb), l1p(x.lqHb), l1p(x.lqSh), l1p(x.lqHh)}
		}},
		{"LR: asinh lqS, lqH (joint)", func(x features) []float64 { return []float64{ash(x.lqS), ash(x.lqH)} }},
		{"LR: ln(1-lq) S, H (joint)", func(x features) []float64 { return []float64{l1p(x.lqS), l1p(x.lqH)} }},
		{"LR: asinh lqSb, lqHb, lqSh, lqHh, ln n", func(x features) []float64 {
			return []float64{ash(x.lqSb), ash(x.lqHb), ash(x.lqSh), ash(x.lqHh), math.Log1p(x.n)}
		}},
		{"LR: asinh 4 + chi-0.5", func(x features) []float64 {
			return []float64{ash(x.lqSb), ash(x.lqHb), ash(x.lqSh), ash(x.lqHh), x.chi - 0.5}
		}},
	}
	hws := []float64{1, 3, 10, 30}
	lrGrid := func(tag string, bands bool) {
		for _, v := range lrs {
			for _, hw := range hws {
				lam := 1.0
				out := make([]bayescli.Scored, len(msgs))
				var ws []string
				for f := 0; f < k; f++ {
					var X [][]float64
					var y, wt []float64
					for i, m := range msgs {
						if m.fold == f {
							continue
						}
						X = append(X, v.x(feats[i]))
						if m.spam {
							y, wt = append(y, 1), append(wt, 1)
						} else {
							y, wt = append(y, 0), append(wt, hw)
						}
					}
					beta := fitLR(X, y, wt, lam)
					if f == 0 {
						ws = append(ws, fmt.Sprintf("%.3g", beta))
					}
					for i, m := range msgs {
						if m.fold == f {
							out[i] = bayescli.Scored{Prob: sigmoid(dot(beta, v.x(feats[i]))), Spam: m.spam}
						}
					}
				}
				report2(fmt.Sprintf("%s%s (ham weight %g) %v", tag, v.name, hw, ws), out)
				for _, band := range [][2]float64{{0.2, 0.8}, {0.3, 0.7}, {0.4, 0.6}} {
					if !bands {
						break
					}
					bo := make([]bayescli.Scored, len(out))
					for i := range out {
						bo[i] = out[i]
						if c := feats[i].chi; c <= band[0] || c >= band[1] {
							bo[i].Prob = c
						} else {
							bo[i].Prob = band[0] + (band[1]-band[0])*out[i].Prob
						}
					}
					report2(fmt.Sprintf("   band %g-%g by it", band[0], band[1]), bo)
				}
			}
		}
	}
	// the feature sets, on the default clues (header tails with weight 1.5)
	score(def, 0.15, 1.5, chi)
	lrGrid("", false)
	// the chosen features (ln(1 − ln Q) of the four tails) with header tails of esf
	// 0.15 (weight 1) or 0.225 (1.5), with and without the body's hapaxes, also used
	// only inside bands of the chi-square score (mid_band)
	lrs, hws = lrs[1:2], []float64{3, 10, 20}
	for _, hap := range []bool{false, true} {
		for _, esfH := range []float64{0.15, 0.225} {
			sel := def
			sel.noHapaxB = hap
			score(sel, 0.15, esfH/0.15, chi)
			lrGrid(fmt.Sprintf("hapax-free body %v, esf header %g: ", hap, esfH), true)
		}
	}
	// DefaultMidWeights: the same fit on all the outputs
	score(def, 0.15, 1, chi)
	var X [][]float64
	var y, wt []float64
	for i, m := range msgs {
		X = append(X, lrs[0].x(feats[i]))
		if m.spam {
			y, wt = append(y, 1), append(wt, 1)
		} else {
			y, wt = append(y, 0), append(wt, 10)
		}
	}
	fmt.Println("weights fitted on all outputs (ham weight 10, λ 1):", fitLR(X, y, wt, 1))
}

// foldOf is the fold of message i of the spam-then-ham list (as bayescli.KFold:
// index within its class mod k).
func foldOf(i, nspam, k int) int {
	if i < nspam {
		return i % k
	}
	return (i - nspam) % k
}

type ctok struct {
	h   uint64
	f   float64
	n   uint32
	hdr bool
}

type cmsg struct {
	toks []ctok
	spam bool
	fold int
	tot  bayes.Totals
}

type selection struct {
	minDevB, minDevH   float64
	maxTok             int
	noHapaxB, noHapaxH bool
	dofESF             float64 // esf of the degrees of freedom when not the logs' (0: same)
}

type features struct {
	chi, geo, nb           float64
	lqS, lqH               float64 // joint, weighted
	lqSb, lqHb, lqSh, lqHh float64 // apart, each with esf
	sb, hb, sh, hh         float64 // esf·Σ ln(1−f), esf·Σ ln f
	n                      float64
}

func (sel selection) features(m cmsg, esf, w float64) features {
	type cl struct {
		ctok
		dev float64
	}
	var cs []cl
	for _, t := range m.toks {
		dev := math.Abs(t.f - 0.5)
		if t.hdr && (dev < sel.minDevH || sel.noHapaxH && t.n == 1) {
			continue
		}
		if !t.hdr && (dev < sel.minDevB || sel.noHapaxB && t.n == 1) {
			continue
		}
		cs = append(cs, cl{t, dev})
	}
	if len(cs) > sel.maxTok {
		slices.SortFunc(cs, func(a, b cl) int { return fisher.Stronger(a.dev, a.h, b.dev, b.h) })
		cs = cs[:sel.maxTok]
	}
	var x features
	var nb, nh float64
	for _, c := range cs {
		ls, lh := math.Log(1-c.f), math.Log(c.f)
		if c.hdr {
			x.sh += ls
			x.hh += lh
			nh++
		} else {
			x.sb += ls
			x.hb += lh
			nb++
		}
	}
	x.n = nb + w*nh
	if len(cs) == 0 {
		x.chi, x.geo = 0.5, 0.5
		return x
	}
	dofESF := esf
	if sel.dofESF > 0 {
		dofESF = sel.dofESF
	}
	lnS, lnH := esf*(x.sb+w*x.sh), esf*(x.hb+w*x.hh)
	v := 2 * max(1, int(math.Round(dofESF*x.n)))
	x.lqS, x.lqH = fisher.LnQ(-2*lnS, v), fisher.LnQ(-2*lnH, v)
	x.chi = fisher.Score(x.lqS, x.lqH)
	x.lqSb, x.lqHb = fisher.Tails(x.sb, x.hb, nb, esf)
	x.lqSh, x.lqHh = fisher.Tails(w*x.sh, w*x.hh, w*nh, esf)
	// Robinson: P = 1 − (Π(1−f))^(1/n), Q = 1 − (Π f)^(1/n), S = (P − Q)/(P + Q)
	P := 1 - math.Exp((x.sb+w*x.sh)/x.n)
	Q := 1 - math.Exp((x.hb+w*x.hh)/x.n)
	x.geo = (1 + (P-Q)/(P+Q)) / 2
	// Σ ln(f/(1−f)), positive for spam
	x.nb = (x.hb + w*x.hh) - (x.sb + w*x.sh)
	x.sb, x.hb, x.sh, x.hh = esf*x.sb, esf*x.hb, esf*w*x.sh, esf*w*x.hh
	return x
}

func dot(a, b []float64) float64 {
	z := a[0]
	for i, v := range b {
		z += a[i+1] * v
	}
	return z
}

// fitLR fits weighted logistic regression with an intercept and an L2 penalty lam on
// the standardized coefficients (Newton's method). It returns the intercept and the
// coefficients of the raw features.
func fitLR(X [][]float64, y, wt []float64, lam float64) []float64 {
	d := len(X[0])
	mu, sd := make([]float64, d), make([]float64, d)
	for _, x := range X {
		for j, v := range x {
			mu[j] += v
		}
	}
	for j := range mu {
		mu[j] /= float64(len(X))
	}
	for _, x := range X {
		for j, v := range x {
			sd[j] += (v - mu[j]) * (v - mu[j])
		}
	}
	for j := range sd {
		sd[j] = math.Sqrt(sd[j]/float64(len(X))) + 1e-12
	}
	z := make([][]float64, len(X))
	for i, x := range X {
		z[i] = make([]float64, d+1)
		z[i][0] = 1
		for j, v := range x {
			z[i][j+1] = (v - mu[j]) / sd[j]
		}
	}
	beta := make([]float64, d+1)
	for it := 0; it < 100; it++ {
		g := make([]float64, d+1)
		Hm := make([][]float64, d+1)
		for j := range Hm {
			Hm[j] = make([]float64, d+1)
		}
		for i, x := range z {
			var e float64
			for j, v := range x {
				e += beta[j] * v
			}
			p := sigmoid(e)
			r := wt[i] * (p - y[i])
			q := wt[i] * max(p*(1-p), 1e-12)
			for a := range x {
				g[a] += r * x[a]
				qa := q * x[a]
				for b := a; b < len(x); b++ {
					Hm[a][b] += qa * x[b]
				}
			}
		}
		for a := range Hm {
			for b := 0; b < a; b++ {
				Hm[a][b] = Hm[b][a]
			}
		}
		for j := 1; j <= d; j++ {
			g[j] += lam * beta[j]
			Hm[j][j] += lam
		}
		step := solve(Hm, g)
		var mx float64
		for j := range beta {
			beta[j] -= step[j]
			mx = max(mx, math.Abs(step[j]))
		}
		if mx < 1e-9 {
			break
		}
	}
	out := make([]float64, d+1)
	out[0] = beta[0]
	for j := 0; j < d; j++ {
		out[j+1] = beta[j+1] / sd[j]
		out[0] -= beta[j+1] * mu[j] / sd[j]
	}
	return out
}

// solve solves A x = b by Gaussian elimination with partial pivoting.
func solve(A [][]float64, b []float64) []float64 {
	n := len(b)
	M := make([][]float64, n)
	for i := range M {
		M[i] = append(append([]float64{}, A[i]...), b[i])
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(M[r][c]) > math.Abs(M[p][c]) {
				p = r
			}
		}
		M[c], M[p] = M[p], M[c]
		for r := c + 1; r < n; r++ {
			f := M[r][c] / M[c][c]
			for j := c; j <= n; j++ {
				M[r][j] -= f * M[c][j]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := M[r][n]
		for j := r + 1; j < n; j++ {
			s -= M[r][j] * x[j]
		}
		x[r] = s / M[r][r]
	}
	return x
}

// report2 prints 1 − ROC area, false positives / negatives at 0.5 and the false
// negatives at the cut-offs that let through 1, 3 and 5 ham.
func report2(name string, scores []bayescli.Scored) {
	var hs, ss []float64
	fp, fn := 0, 0
	for _, s := range scores {
		if s.Spam {
			ss = append(ss, s.Prob)
			if s.Prob < 0.5 {
				fn++
			}
		} else {
			hs = append(hs, s.Prob)
			if s.Prob >= 0.5 {
				fp++
			}
		}
	}
	sort.Float64s(hs)
	b := fmt.Sprintf("%d/%d at 0.5, FN at 1/2/3/4/5 FP", fp, fn)
	for k := 1; k <= 5; k++ {
		if k > 1 {
			b += " /"
		}
		b += fmt.Sprintf(" %d", fnAtFP(hs, ss, k))
	}
	fmt.Printf("%-60s 1-AUC=%.6f  %s\n", name, 1-bayescli.AUC(scores), b)
}

// midBandKFold cross-validates the classifier itself with the mid band off, at its
// default and at neighbouring widths (the default weights were fitted on the
// cross-validated outputs of the same split, so these rows are not nested; the
// nested measurement is combineExperiments').
func midBandKFold(ctx context.Context, spam, ham [][]byte, k int) {
	tok := bayes.NewTokenizer(bayes.TokenizerConfig{})
	sh, hh := bayescli.Tokenize(tok, spam), bayescli.Tokenize(tok, ham)
	for _, b := range []float64{-1, 0.1, 0.15, 0.2, 0.25, 0.3} {
		sc, _, _, err := bayescli.KFold(ctx, bayes.Config{MidBand: b}, sh, hh, k)
		if err != nil {
			log.Fatal(err)
		}
		report2(fmt.Sprintf("classifier, mid_band %g", b), sc)
	}
}

// trainFold trains store with the messages of ups (spam first, nspam of them) for
// which train(i) holds, then runs c's TUNE passes over them, as bayes train does.
func trainFold(ctx context.Context, store bayes.Store, c *bayes.Classifier, ups []bayes.Update, nspam int, train func(i int) bool) {
	var tr []bayes.Update
	for i, u := range ups {
		if train(i) {
			u.Class = bayes.Ham
			if i < nspam {
				u.Class = bayes.Spam
			}
			tr = append(tr, u)
		}
	}
	if _, err := store.Apply(ctx, tr); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Reinforce(ctx, tr); err != nil {
		log.Fatal(err)
	}
}
