package bayes

import "math"

// robinson returns Gary Robinson's smoothed per-token spam probability
//
//	f(w) = (s·x + n·p(w)) / (s + n),  p(w) = b(w) / (b(w) + g(w)),
//
// where b(w) and g(w) are the fractions of trained spam and ham containing w, n the
// number of trained messages containing w, s the strength given to the prior x.
func robinson(spam, ham uint32, nspam, nham uint32, s, x float64) float64 {
	n := float64(spam) + float64(ham)
	if n == 0 {
		return x
	}
	var b, g float64
	if nspam > 0 {
		b = float64(spam) / float64(nspam)
	}
	if nham > 0 {
		g = float64(ham) / float64(nham)
	}
	p := x
	if b+g > 0 {
		p = b / (b + g)
	}
	return (s*x + n*p) / (s + n)
}

// chi2Q returns the probability that a chi-square variable with v degrees of freedom
// (v even) is at least x2: Q = e^{-m} Σ_{i<v/2} m^i/i!, m = x2/2. The sum is kept
// scaled so that large m and v neither underflow nor overflow.
func chi2Q(x2 float64, v int) float64 {
	return min(math.Exp(lnChi2Q(x2, v)), 1)
}

// lnChi2Q is ln chi2Q, exact even where chi2Q underflows to 0.
func lnChi2Q(x2 float64, v int) float64 {
	if x2 <= 0 || v <= 0 {
		return 0
	}
	m := x2 / 2
	term, sum, logScale := 1.0, 1.0, 0.0
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
		if sum > 1e250 {
			sum *= 1e-250
			term *= 1e-250
			logScale += 250 * math.Ln10
		}
	}
	return min(math.Log(sum)+logScale-m, 0)
}

// fisher combines per-token probabilities with Fisher's method, as SpamBayes does:
//
//	S = 1 − Q(−2 Σ ln(1−fᵢ), 2n)   (evidence of spam)
//	H = 1 − Q(−2 Σ ln fᵢ, 2n)      (evidence of ham)
//	score = (1 + S − H) / 2
//
// The products are kept as mantissa and exponent (math.Frexp) so that only two
// logarithms are taken per message.
func fisher(fs []float64) float64 { return fisherESF(fs, 1) }

// fisherESF is fisher with an effective size factor (as bogofilter): the tokens of a
// message are not independent, so the two sums count as esf·n tokens: they are
// scaled by esf and the degrees of freedom are 2·round(esf·n) (at least 2).
func fisherESF(fs []float64, esf float64) float64 {
	n := len(fs)
	if n == 0 {
		return 0.5
	}
	hp, sp := 1.0, 1.0
	hexp, sexp := 0, 0
	for _, f := range fs {
		hp *= f
		sp *= 1 - f
		if hp < 1e-200 {
			var e int
			hp, e = math.Frexp(hp)
			hexp += e
		}
		if sp < 1e-200 {
			var e int
			sp, e = math.Frexp(sp)
			sexp += e
		}
	}
	lnH := math.Log(hp) + float64(hexp)*math.Ln2
	lnS := math.Log(sp) + float64(sexp)*math.Ln2
	v := 2 * n
	if esf != 1 {
		lnS, lnH = esf*lnS, esf*lnH
		v = 2 * max(1, int(math.Round(esf*float64(n))))
	}
	lqS, lqH := lnChi2Q(-2*lnS, v), lnChi2Q(-2*lnH, v)
	S := 1 - math.Exp(lqS)
	H := 1 - math.Exp(lqH)
	score := (1 + S - H) / 2
	// With strong evidence both ways both tails are below the float resolution and
	// the score rounds to exactly 0.5; the exact comparison of the tails still says
	// which side it is on (score − 0.5 = (Q_H − Q_S)/2), so step one ulp that way.
	if score == 0.5 && lqS != lqH {
		if lqH > lqS {
			score = math.Nextafter(0.5, 1)
		} else {
			score = math.Nextafter(0.5, 0)
		}
	}
	return score
}

// fisherWeighted is fisherESF of the body clues fs and the header clues hfs, the
// latter's log probabilities and share of the degrees of freedom weighted by w.
func fisherWeighted(fs, hfs []float64, esf, w float64) float64 {
	return fisherMid(fs, hfs, esf, w, nil)
}

// midBand re-ranks the scores of the middle band (Config.MidBand), where the
// chi-square score says only that both spam and ham evidence are strong.
type midBand struct {
	lo, hi float64
	coef   [5]float64 // Config.MidWeights
}

// fisherMid is fisherWeighted, with the scores strictly inside mid's band (when mid
// is not nil) replaced by lo + (hi − lo)·σ(z) of a logistic combination z of the
// four chi-square tails of the body and header clues taken apart (each with esf and
// no header weight):
//
//	z = c₀ + c₁·ln(1 − ln Q_S,body) + c₂·ln(1 − ln Q_H,body)
//	       + c₃·ln(1 − ln Q_S,header) + c₄·ln(1 − ln Q_H,header)
//
// with Q_S = Q(−2·esf·Σ ln(1−f), 2·max(1, round(esf·n))) and Q_H the same of ln f
// over the n clues of that part; a part without clues has ln Q = 0. Scores outside
// the band are the chi-square score's, so the order of confident scores (and the
// TUNE passes, which look only at the ends of the scale) are unchanged.
func fisherMid(fs, hfs []float64, esf, w float64, mid *midBand) float64 {
	if len(fs)+len(hfs) == 0 {
		return 0.5
	}
	blnH, blnS := logProducts(fs)
	hlnH, hlnS := logProducts(hfs)
	lnH, lnS := esf*(blnH+w*hlnH), esf*(blnS+w*hlnS)
	v := 2 * max(1, int(math.Round(esf*(float64(len(fs))+w*float64(len(hfs))))))
	score := chi2Score(lnChi2Q(-2*lnS, v), lnChi2Q(-2*lnH, v))
	if mid == nil || score <= mid.lo || score >= mid.hi {
		return score
	}
	bS, bH := partTails(blnS, blnH, len(fs), esf)
	hS, hH := partTails(hlnS, hlnH, len(hfs), esf)
	c := &mid.coef
	z := c[0] + c[1]*math.Log1p(-bS) + c[2]*math.Log1p(-bH) + c[3]*math.Log1p(-hS) + c[4]*math.Log1p(-hH)
	return mid.lo + (mid.hi-mid.lo)/(1+math.Exp(-z))
}

// partTails returns ln Q_S and ln Q_H of the n clues with log products lnS and lnH,
// combined with the effective size factor esf (0, 0 without clues).
func partTails(lnS, lnH float64, n int, esf float64) (lqS, lqH float64) {
	if n == 0 {
		return 0, 0
	}
	v := 2 * max(1, int(math.Round(esf*float64(n))))
	return lnChi2Q(-2*esf*lnS, v), lnChi2Q(-2*esf*lnH, v)
}

// logProducts returns ln Π f and ln Π (1 − f), without underflow.
func logProducts(fs []float64) (lnH, lnS float64) {
	hp, sp := 1.0, 1.0
	hexp, sexp := 0, 0
	for _, f := range fs {
		hp *= f
		sp *= 1 - f
		if hp < 1e-200 {
			var e int
			hp, e = math.Frexp(hp)
			hexp += e
		}
		if sp < 1e-200 {
			var e int
			sp, e = math.Frexp(sp)
			sexp += e
		}
	}
	return math.Log(hp) + float64(hexp)*math.Ln2, math.Log(sp) + float64(sexp)*math.Ln2
}

// chi2Score is (1 + S − H)/2 of the logs of the two tails, stepped one ulp off 0.5
// towards the stronger side when it rounds to 0.5 exactly (as fisherESF).
func chi2Score(lqS, lqH float64) float64 {
	score := (1 + (1 - math.Exp(lqS)) - (1 - math.Exp(lqH))) / 2
	if score == 0.5 && lqS != lqH {
		if lqH > lqS {
			return math.Nextafter(0.5, 1)
		}
		return math.Nextafter(0.5, 0)
	}
	return score
}
