package fisher

import (
	"fmt"
	"math"
	"testing"
)

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

// chi2QRef computes the chi-square survival function for even v in log space,
// term by term with Lgamma, as an independent reference.
func chi2QRef(x2 float64, v int) float64 {
	m := x2 / 2
	var terms []float64
	for i := 0; i < v/2; i++ {
		lg, _ := math.Lgamma(float64(i) + 1)
		terms = append(terms, -m+float64(i)*math.Log(m)-lg)
	}
	mx := math.Inf(-1)
	for _, t := range terms {
		mx = math.Max(mx, t)
	}
	s := 0.0
	for _, t := range terms {
		s += math.Exp(t - mx)
	}
	return math.Min(1, math.Exp(mx+math.Log(s)))
}

func TestLnQ(t *testing.T) {
	q := func(x2 float64, v int) float64 { return math.Exp(LnQ(x2, v)) }
	// hand-computed: Q(x2, 2) = e^{-x2/2}; Q(x2, 4) = e^{-m}(1+m)
	cases := []struct {
		x2   float64
		v    int
		want float64
	}{
		{2, 2, math.Exp(-1)},
		{4, 4, 3 * math.Exp(-2)},
		{10, 6, math.Exp(-5) * (1 + 5 + 12.5)},
		{0, 10, 1},
	}
	for _, c := range cases {
		if got := q(c.x2, c.v); !near(got, c.want, 1e-12) {
			t.Errorf("Q(%v, %d) = %v, want %v", c.x2, c.v, got, c.want)
		}
	}
	// large arguments, where a naive e^{-m} underflows
	for _, c := range []struct {
		x2 float64
		v  int
	}{{2000, 2000}, {3000, 2000}, {1500, 300}, {800, 1000}, {5000, 6000}} {
		got, want := q(c.x2, c.v), chi2QRef(c.x2, c.v)
		if !near(got, want, 1e-9) {
			t.Errorf("Q(%v, %d) = %v, reference %v", c.x2, c.v, got, want)
		}
	}
	if q := q(2000, 2000); q < 0.45 || q > 0.55 {
		t.Errorf("q(2000, 2000) = %v, want about one half", q)
	}
}

func TestRobinson(t *testing.T) {
	// spam 3 of 10, ham 1 of 20: b=0.3, g=0.05, p=6/7, n=4, s=1, x=0.5
	want := (0.5 + 4*6.0/7) / 5
	if got := Robinson(3, 1, 10, 20, 1, 0.5); !near(got, want, 1e-12) {
		t.Errorf("robinson = %v, want %v", got, want)
	}
	if got := Robinson(0, 0, 10, 20, 0.1, 0.4); got != 0.4 {
		t.Errorf("unknown token = %v, want x", got)
	}
	// a hapax of ham with s=0.1: (0.05 + 0)/1.1
	if got := Robinson(0, 1, 10, 10, 0.1, 0.5); !near(got, 0.05/1.1, 1e-12) {
		t.Errorf("ham hapax = %v", got)
	}
}

func TestScore(t *testing.T) {
	// one clue 0.9 of Fisher's method: ln Q_S = ln 0.1, ln Q_H = ln 0.9, score 0.9
	if got := Score(math.Log(0.1), math.Log(0.9)); !near(got, 0.9, 1e-12) {
		t.Errorf("Score = %v, want 0.9", got)
	}
	// both tails below the float resolution: one ulp towards the stronger side (the
	// tinier Q_S is stronger spam evidence)
	if got := Score(-800, -700); got != math.Nextafter(0.5, 1) {
		t.Errorf("Score(-800, -700) = %v, want just above 0.5", got)
	}
	if got := Score(-700, -800); got != math.Nextafter(0.5, 0) {
		t.Errorf("Score(-700, -800) = %v, want just below 0.5", got)
	}
	if got := Score(-700, -700); got != 0.5 {
		t.Errorf("Score(-700, -700) = %v, want 0.5", got)
	}
}

func TestTails(t *testing.T) {
	// two clues 0.9 and 0.8, esf 1: v = 4, Q(x2, 4) = e^{−m}(1 + m), m = −ln(0.1·0.2)
	lnS, lnH := math.Log(0.1*0.2), math.Log(0.9*0.8)
	m := -lnS
	if s, h := Tails(lnS, lnH, 2, 1); !near(s, -m+math.Log1p(m), 1e-12) || !near(h, lnH+math.Log1p(-lnH), 1e-12) {
		t.Errorf("Tails = %v, %v", s, h)
	}
	if s, h := Tails(0, 0, 0, 0.15); s != 0 || h != 0 {
		t.Errorf("Tails without clues = %v, %v", s, h)
	}
}

func TestStronger(t *testing.T) {
	if Stronger(0.4, 9, 0.3, 1) >= 0 || Stronger(0.3, 1, 0.4, 9) <= 0 ||
		Stronger(0.4, 1, 0.4, 2) >= 0 || Stronger(0.4, 2, 0.4, 1) <= 0 || Stronger(0.4, 1, 0.4, 1) != 0 {
		t.Error("Stronger: wrong order")
	}
}

// Example combines two spammy clues and one hammy clue with Fisher's method.
func Example() {
	var lnS, lnH float64
	fs := []float64{0.99, 0.95, 0.2}
	for _, f := range fs {
		lnS, lnH = lnS+math.Log(1-f), lnH+math.Log(f)
	}
	fmt.Printf("%.4f\n", Score(Tails(lnS, lnH, float64(len(fs)), 1)))
	// Output: 0.8746
}
