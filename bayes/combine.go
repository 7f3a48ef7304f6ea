package bayes

import (
	"math"

	"github.com/portcullis-mail/portcullis/bayes/internal/fisher"
)

// midBand re-ranks the scores of the middle band (Config.MidBand), where the
// chi-square score says only that both spam and ham evidence are strong.
type midBand struct {
	lo, hi float64
	coef   [5]float64 // Config.MidWeights
}

// fisherMid combines the per-token probabilities of the body clues fs and the header
// clues hfs with Fisher's method, as SpamBayes does:
//
//	S = 1 − Q(−2·esf·Σ ln(1−fᵢ), 2m)   (evidence of spam)
//	H = 1 − Q(−2·esf·Σ ln fᵢ, 2m)      (evidence of ham)
//	score = (1 + S − H) / 2,  m = max(1, round(esf·n))
//
// with bogofilter's effective size factor esf (a message's tokens are not independent,
// so the sums count as esf·n tokens) and each header clue's log probability and share
// of n weighted by w. The products are kept as mantissa and exponent (math.Frexp) so
// that only two logarithms are taken per part.
//
// Scores strictly inside mid's band (when mid is not nil) are replaced by
// lo + (hi − lo)·σ(z) of a logistic combination z of the four chi-square tails of the
// body and header clues taken apart (each with esf and no header weight):
//
//	z = c₀ + c₁·ln(1 − ln Q_S,body) + c₂·ln(1 − ln Q_H,body)
//	       + c₃·ln(1 − ln Q_S,header) + c₄·ln(1 − ln Q_H,header)
//
// a part without clues having ln Q = 0. Scores outside the band are the chi-square
// score's, so the order of confident scores (and the TUNE passes, which look only at
// the ends of the scale) are unchanged.
func fisherMid(fs, hfs []float64, esf, w float64, mid *midBand) float64 {
	if len(fs)+len(hfs) == 0 {
		return 0.5
	}
	blnH, blnS := logProducts(fs)
	hlnH, hlnS := logProducts(hfs)
	score := fisher.Score(fisher.Tails(blnS+w*hlnS, blnH+w*hlnH, float64(len(fs))+w*float64(len(hfs)), esf))
	if mid == nil || score <= mid.lo || score >= mid.hi {
		return score
	}
	bS, bH := fisher.Tails(blnS, blnH, float64(len(fs)), esf)
	hS, hH := fisher.Tails(hlnS, hlnH, float64(len(hfs)), esf)
	c := &mid.coef
	z := c[0] + c[1]*math.Log1p(-bS) + c[2]*math.Log1p(-bH) + c[3]*math.Log1p(-hS) + c[4]*math.Log1p(-hH)
	return mid.lo + (mid.hi-mid.lo)/(1+math.Exp(-z))
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
