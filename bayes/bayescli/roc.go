package bayescli

import (
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"slices"
)

// Scored is one test message's score and true class.
type Scored struct {
	Prob float64
	Spam bool
}

// ROCPoint is one point of the ROC curve.
type ROCPoint struct{ FPR, TPR float64 }

// ROC returns the ROC curve of scores (spam is the positive class), one point per
// distinct score, from (0,0) to (1,1).
func ROC(scores []Scored) []ROCPoint {
	s := slices.Clone(scores)
	slices.SortFunc(s, func(a, b Scored) int {
		switch {
		case a.Prob > b.Prob:
			return -1
		case a.Prob < b.Prob:
			return 1
		}
		return 0
	})
	var pos, neg float64
	for _, x := range s {
		if x.Spam {
			pos++
		} else {
			neg++
		}
	}
	pts := []ROCPoint{{0, 0}}
	var tp, fp float64
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j].Prob == s[i].Prob {
			if s[j].Spam {
				tp++
			} else {
				fp++
			}
			j++
		}
		pts = append(pts, ROCPoint{FPR: div(fp, neg), TPR: div(tp, pos)})
		i = j
	}
	return pts
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// AUC returns the area under the ROC curve (ties count half: the Mann-Whitney U).
func AUC(scores []Scored) float64 {
	pts := ROC(scores)
	var a float64
	for i := 1; i < len(pts); i++ {
		a += (pts[i].FPR - pts[i-1].FPR) * (pts[i].TPR + pts[i-1].TPR) / 2
	}
	return a
}

// WriteROCPNG draws the ROC curve as a PNG: false positive rate on a logarithmic x
// axis from 0.1% to 100% (where spam filters differ; grid lines at each decade), true
// positive rate on y from the tenth below the curve to 1 (grid lines at tenths of that
// range).
func WriteROCPNG(w io.Writer, scores []Scored) error {
	const W, H, M = 640, 480, 40
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	white := color.RGBA{255, 255, 255, 255}
	grey := color.RGBA{200, 200, 200, 255}
	black := color.RGBA{0, 0, 0, 255}
	blue := color.RGBA{20, 60, 200, 255}
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			img.Set(x, y, white)
		}
	}
	pw, ph := float64(W-2*M), float64(H-2*M)
	const decades = 3.0 // 1e-3 .. 1
	xOf := func(fpr float64) float64 {
		if fpr < 1e-3 {
			fpr = 1e-3
		}
		return M + pw*(math.Log10(fpr)+decades)/decades
	}
	// the y axis starts at the tenth below the curve's left end, so that a good
	// classifier's curve is not a line along the top edge
	pts := ROC(scores)
	left := 0.0 // the curve's value at the left edge (FPR 0.1%)
	for _, p := range pts {
		if p.FPR <= 1e-3 {
			left = max(left, p.TPR)
		}
	}
	lo := min(math.Floor(left*10)/10, 0.9)
	yOf := func(tpr float64) float64 { return float64(H-M) - ph*(max(tpr, lo)-lo)/(1-lo) }
	// grid: decades on x, tenths on y
	for d := 0; d <= 3; d++ {
		x := int(M + pw*float64(d)/decades)
		for y := M; y <= H-M; y++ {
			img.Set(x, y, grey)
		}
	}
	for t := 0; t <= 10; t++ {
		y := int(yOf(lo + (1-lo)*float64(t)/10))
		for x := M; x <= W-M; x++ {
			img.Set(x, y, grey)
		}
	}
	// axes
	for x := M; x <= W-M; x++ {
		img.Set(x, H-M, black)
	}
	for y := M; y <= H-M; y++ {
		img.Set(M, y, black)
	}
	for i := 1; i < len(pts); i++ {
		// step: horizontal then vertical, as the empirical curve is a staircase
		line(img, xOf(pts[i-1].FPR), yOf(pts[i-1].TPR), xOf(pts[i].FPR), yOf(pts[i-1].TPR), blue)
		line(img, xOf(pts[i].FPR), yOf(pts[i-1].TPR), xOf(pts[i].FPR), yOf(pts[i].TPR), blue)
	}
	return png.Encode(w, img)
}

func line(img *image.RGBA, x0, y0, x1, y1 float64, c color.RGBA) {
	n := int(max(abs(x1-x0), abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		x, y := int(x0+(x1-x0)*t), int(y0+(y1-y0)*t)
		for dx := 0; dx < 2; dx++ {
			img.Set(x+dx, y, c)
			img.Set(x, y+dx, c)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
