// Package fisher holds the arithmetic of the bayes classifier: Robinson's per-token
// probability, the chi-square tails and score of Fisher's combining, and the order of
// the clues, apart from the tokens and the store so that it is tested on its own.
package fisher

import "math"

// Robinson returns Gary Robinson's smoothed per-token spam probability
//
//	f(w) = (s·x + n·p(w)) / (s + n),  p(w) = b(w) / (b(w) + g(w)),
//
// where b(w) and g(w) are the fractions of trained spam and ham containing w, n the
// number of trained messages containing w, s the strength given to the prior x.
func Robinson(spam, ham uint32, nspam, nham uint32, s, x float64) float64 {
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

// LnQ returns ln Q(x2, v), Q the probability that a chi-square variable with v degrees
// of freedom (v even) is at least x2: Q = e^{-m} Σ_{i<v/2} m^i/i!, m = x2/2. The sum
// is kept scaled so that large m and v neither underflow nor overflow, and the
// logarithm is exact even where Q itself underflows to 0.
func LnQ(x2 float64, v int) float64 {
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

// Score is (1 + S − H)/2 with S = 1 − Q_S and H = 1 − Q_H, given ln Q_S and ln Q_H.
// With strong evidence both ways both tails are below the float resolution and the
// score rounds to exactly 0.5; the exact comparison of the tails still says which
// side it is on (score − 0.5 = (Q_H − Q_S)/2), so it is stepped one ulp that way.
func Score(lqS, lqH float64) float64 {
	score := (1 + (1 - math.Exp(lqS)) - (1 - math.Exp(lqH))) / 2
	if score == 0.5 && lqS != lqH {
		if lqH > lqS {
			return math.Nextafter(0.5, 1)
		}
		return math.Nextafter(0.5, 0)
	}
	return score
}

// Tails returns ln Q_S and ln Q_H of n clues whose log products are lnS = Σ ln(1−f)
// and lnH = Σ ln f, combined with the effective size factor esf: the sums are scaled
// by esf and the degrees of freedom are 2·max(1, round(esf·n)). n is a float so that
// weighted clues count by their weight. Without clues both are 0 (Q = 1).
func Tails(lnS, lnH, n, esf float64) (lqS, lqH float64) {
	if n == 0 {
		return 0, 0
	}
	v := 2 * max(1, int(math.Round(esf*n)))
	return LnQ(-2*esf*lnS, v), LnQ(-2*esf*lnH, v)
}

// Stronger orders two clues by their deviation |f − 0.5| from neutral, the stronger
// first, and ties by token hash, so that the selection of the strongest clues is
// deterministic: it is negative when clue a comes first.
func Stronger(devA float64, hA uint64, devB float64, hB uint64) int {
	switch {
	case devA > devB:
		return -1
	case devA < devB:
		return 1
	case hA < hB:
		return -1
	case hA > hB:
		return 1
	}
	return 0
}
