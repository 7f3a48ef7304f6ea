package bayes

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

// chiSquare is the plain chi-square combining of clues fs (no esf, no header, no band).
func chiSquare(fs []float64) float64 { return fisherMid(fs, nil, 1, 1, nil) }

func TestFisher(t *testing.T) {
	// one token 0.9: S = 1 − Q(−2 ln 0.1, 2) = 0.9, H = 1 − 0.9 = 0.1, score = 0.9
	if got := chiSquare([]float64{0.9}); !near(got, 0.9, 1e-12) {
		t.Errorf("chi-square(0.9) = %v", got)
	}
	// two tokens 0.9, 0.2, computed by hand:
	// S: Π(1−f)=0.08, m=−ln 0.08, Q=0.08(1+m)  H: Πf=0.18, m=−ln 0.18, Q=0.18(1+m)
	S := 1 - 0.08*(1-math.Log(0.08))
	H := 1 - 0.18*(1-math.Log(0.18))
	want := (1 + S - H) / 2
	if got := chiSquare([]float64{0.9, 0.2}); !near(got, want, 1e-12) || !near(want, 0.603303, 1e-6) {
		t.Errorf("chi-square(0.9, 0.2) = %v, want %v (0.603303)", got, want)
	}
	if got := chiSquare(nil); got != 0.5 {
		t.Errorf("chi-square() = %v", got)
	}
	// symmetric evidence gives one half; many tiny probabilities do not underflow
	if got := chiSquare([]float64{0.99, 0.01}); !near(got, 0.5, 1e-12) {
		t.Errorf("chi-square(0.99, 0.01) = %v", got)
	}
	many := make([]float64, 1000)
	for i := range many {
		many[i] = 0.001
	}
	if got := chiSquare(many); !(got >= 0 && got < 1e-6) {
		t.Errorf("chi-square(1000 × 0.001) = %v, want ≈ 0", got)
	}
}

func TestSelectTop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for n := 0; n < 500; n++ {
		cs := make([]clue, 1+r.IntN(400))
		for i := range cs {
			cs[i] = clue{h: uint64(r.IntN(50)), dev: float64(r.IntN(20)) / 40}
		}
		k := 1 + r.IntN(len(cs))
		want := slices.Clone(cs)
		slices.SortFunc(want, clueOrder)
		selectTop(cs, k)
		got := slices.Clone(cs[:k])
		slices.SortFunc(got, clueOrder)
		if !slices.Equal(got, want[:k]) {
			t.Fatalf("n=%d k=%d: top differs", len(cs), k)
		}
	}
}

// TestFisherTies: strong evidence both ways rounds to 0.5, yet the side is kept.
func TestFisherTies(t *testing.T) {
	var fs []float64
	for i := 0; i < 400; i++ {
		fs = append(fs, 0.999, 0.001)
	}
	// symmetric up to rounding: at most one step from 0.5
	if got := chiSquare(fs); got != 0.5 && got != math.Nextafter(0.5, 0) && got != math.Nextafter(0.5, 1) {
		t.Errorf("symmetric: %v", got)
	}
	spammy := append(slices.Clone(fs), 0.9)
	hammy := append(slices.Clone(fs), 0.1)
	if s, h := chiSquare(spammy), chiSquare(hammy); !(s > 0.5 && h < 0.5) {
		t.Errorf("ties not broken: spammy %v, hammy %v", s, h)
	}
}

// TestFisherWeighted checks the header weighting: weight 1 is the combining of all
// clues as one list, and weight 2 is that with every header clue counted twice.
func TestFisherWeighted(t *testing.T) {
	body := []float64{0.9, 0.2, 0.97, 0.05, 0.999}
	hdr := []float64{0.99, 0.1, 0.93}
	for _, esf := range []float64{1, 0.15} {
		all := append(slices.Clone(body), hdr...)
		if got, want := fisherMid(body, hdr, esf, 1, nil), fisherMid(all, nil, esf, 1, nil); !near(got, want, 1e-12) {
			t.Errorf("esf %v, weight 1: %v, want %v", esf, got, want)
		}
		twice := append(slices.Clone(all), hdr...)
		if got, want := fisherMid(body, hdr, esf, 2, nil), fisherMid(twice, nil, esf, 1, nil); !near(got, want, 1e-12) {
			t.Errorf("esf %v, weight 2: %v, want %v", esf, got, want)
		}
	}
	if got := fisherMid(nil, nil, 0.15, 1.5, nil); got != 0.5 {
		t.Errorf("no clues: %v", got)
	}
	// header evidence of spam weighs more than the same body evidence of ham
	if got := fisherMid([]float64{0.05}, []float64{0.95}, 1, 1.5, nil); !(got > 0.5) {
		t.Errorf("header 0.95 against body 0.05 at weight 1.5: %v, want > 0.5", got)
	}
}

func TestFisherMid(t *testing.T) {
	// one body clue 0.9 and one header clue 0.1 (esf 1, w 1): the chi-square score is
	// 0.5, inside the band 0.3–0.7. With one clue, v = 2 and Q(x2, 2) = e^{−x2/2}, so
	// ln Q_S,body = ln 0.1, ln Q_H,body = ln 0.9, ln Q_S,header = ln 0.9,
	// ln Q_H,header = ln 0.1.
	body, hdr := []float64{0.9}, []float64{0.1}
	mid := &midBand{lo: 0.3, hi: 0.7, coef: [5]float64{0.5, 1, 0, 0, 0}}
	// z = 0.5 + ln(1 − ln 0.1) = 1.6947055…, score = 0.3 + 0.4·σ(z)
	if got := fisherMid(body, hdr, 1, 1, mid); !near(got, 0.6379367920438099, 1e-12) {
		t.Errorf("fisherMid = %v, want 0.63793679…", got)
	}
	// symmetric weights: z = 0, the middle of the band
	mid.coef = [5]float64{0, 1, -1, 1, -1}
	if got := fisherMid(body, hdr, 1, 1, mid); !near(got, 0.5, 1e-12) {
		t.Errorf("fisherMid symmetric = %v, want 0.5", got)
	}
	// two body clues 0.9, 0.8 and no header clue: v = 4, Q(x2, 4) = e^{−m}(1 + m) with
	// m = −ln(0.1·0.2), so ln Q_S,body = −m + ln(1 + m) = −2.3203371…; the header
	// tails are 0. With a band of 0.01–0.99, z = ln(1 + 2.3203371…).
	two := []float64{0.9, 0.8}
	mid = &midBand{lo: 0.01, hi: 0.99, coef: [5]float64{0, 1, 0, 0, 7}}
	if got := fisherMid(two, nil, 1, 1, mid); !near(got, 0.7631658501948207, 1e-12) {
		t.Errorf("fisherMid two clues = %v, want 0.76316585…", got)
	}
	// outside the band the score is the chi-square score (two clues 0.9, 0.8:
	// S = 1 − 0.02(1 − ln 0.02), H = 1 − 0.72(1 − ln 0.72))
	mid = &midBand{lo: 0.5 - DefaultMidBand, hi: 0.5 + DefaultMidBand, coef: DefaultMidWeights}
	chi := (1 + 0.72*(1-math.Log(0.72)) - 0.02*(1-math.Log(0.02))) / 2
	if got := fisherMid(two, nil, 1, 1, mid); !near(got, chi, 1e-12) || chi < mid.hi {
		t.Errorf("outside the band: %v, chi-square %v", got, chi)
	}
	// with the default band and weights every score inside the band stays inside it
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		var b, h []float64
		for n := r.IntN(40); n > 0; n-- {
			b = append(b, midTestProb(r.Float64()))
		}
		for n := r.IntN(20); n > 0; n-- {
			h = append(h, midTestProb(r.Float64()))
		}
		chi := fisherMid(b, h, 0.15, 1.5, nil)
		got := fisherMid(b, h, 0.15, 1.5, mid)
		if in := chi > mid.lo && chi < mid.hi; in && !(got > mid.lo && got < mid.hi) || !in && got != chi {
			t.Fatalf("chi-square %v became %v", chi, got)
		}
	}
}

// midTestProb keeps a random probability away from 0 and 1, as Robinson's f is.
func midTestProb(f float64) float64 { return 0.01 + 0.98*f }
