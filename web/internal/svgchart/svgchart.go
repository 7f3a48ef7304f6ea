// Package svgchart draws the web page's charts as SVG on the server: stacked bars (the
// per-category "Policies' Efficiency" figure), grouped lines, a histogram and top-N
// horizontal bars. The functions are pure: the same data gives the same bytes, and every
// label is XML-escaped, because labels come from mail (senders, domains, rule names).
//
// The SVG uses classes (s0…s9 for series colours) so the page's own stylesheet themes it,
// and a <title> per bar or point so a pointer shows the value without JavaScript.
package svgchart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Series is one named row of values, one per label.
type Series struct {
	Name   string
	Values []float64
}

// Chart is the data of a stacked-bar or line chart: Labels along the x axis, one value per
// label in every series.
type Chart struct {
	Title  string
	Labels []string
	Series []Series
}

// Item is one bar of a top-N chart.
type Item struct {
	Label string
	Value float64
}

// Geometry of every chart (SVG user units; the SVG scales to its container).
const (
	width   = 640
	height  = 260
	left    = 48 // room for the y axis labels
	right   = 8
	top     = 24 // room for the title
	bottom  = 40 // room for the x labels
	palette = 10 // colours s0…s9
)

func esc(s string) string { return html.EscapeString(s) }

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// px formats a coordinate with one decimal, so the output is stable and short.
func px(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten, so axis ticks are round.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func clean(v float64) float64 {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func open(b *strings.Builder, title, class string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart %s" viewBox="0 0 %d %d" role="img" aria-label="%s">`, class, width, height, esc(title))
	fmt.Fprintf(b, `<title>%s</title><text class="title" x="%d" y="16">%s</text>`, esc(title), left, esc(title))
}

// axes draws the y axis with ticks at 0, max/2, max and the x labels (at most about 12
// shown, so a month of days stays legible).
func axes(b *strings.Builder, max float64, labels []string, slot float64) {
	plotH := float64(height - top - bottom)
	for _, f := range []float64{0, 0.5, 1} {
		y := float64(top) + plotH*(1-f)
		fmt.Fprintf(b, `<line class="grid" x1="%d" y1="%s" x2="%d" y2="%s"/>`, left, px(y), width-right, px(y))
		fmt.Fprintf(b, `<text class="ytick" x="%d" y="%s" text-anchor="end">%s</text>`, left-4, px(y+4), num(max*f))
	}
	step := 1
	if len(labels) > 12 {
		step = (len(labels) + 11) / 12
	}
	for i := 0; i < len(labels); i += step {
		x := float64(left) + slot*(float64(i)+0.5)
		fmt.Fprintf(b, `<text class="xtick" x="%s" y="%d" text-anchor="middle">%s</text>`, px(x), height-bottom+14, esc(labels[i]))
	}
}

func legend(b *strings.Builder, series []Series) {
	x := float64(left)
	for i, s := range series {
		fmt.Fprintf(b, `<rect class="s%d" x="%s" y="%d" width="10" height="10"/><text class="legend" x="%s" y="%d">%s</text>`,
			i%palette, px(x), height-14, px(x+13), height-5, esc(s.Name))
		x += 13 + 7*float64(len([]rune(s.Name))) + 14
	}
}

// Stacked draws one bar per label, the series stacked bottom-up in order.
func Stacked(c Chart) string {
	var b strings.Builder
	open(&b, c.Title, "stacked")
	n := len(c.Labels)
	max := 0.0
	for i := range n {
		sum := 0.0
		for _, s := range c.Series {
			if i < len(s.Values) {
				sum += clean(s.Values[i])
			}
		}
		max = math.Max(max, sum)
	}
	max = niceMax(max)
	slot := float64(width-left-right) / float64(maxInt(n, 1))
	axes(&b, max, c.Labels, slot)
	plotH := float64(height - top - bottom)
	for i := range n {
		base := float64(height - bottom)
		x := float64(left) + slot*float64(i) + slot*0.15
		for si, s := range c.Series {
			if i >= len(s.Values) || clean(s.Values[i]) == 0 {
				continue
			}
			h := plotH * clean(s.Values[i]) / max
			base -= h
			fmt.Fprintf(&b, `<rect class="bar s%d" x="%s" y="%s" width="%s" height="%s"><title>%s %s: %s</title></rect>`,
				si%palette, px(x), px(base), px(slot*0.7), px(h), esc(c.Labels[i]), esc(s.Name), num(s.Values[i]))
		}
	}
	legend(&b, c.Series)
	b.WriteString(`</svg>`)
	return b.String()
}

// Lines draws one polyline per series with a dot per value.
func Lines(c Chart) string {
	var b strings.Builder
	open(&b, c.Title, "lines")
	n := len(c.Labels)
	max := 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			max = math.Max(max, clean(v))
		}
	}
	max = niceMax(max)
	slot := float64(width-left-right) / float64(maxInt(n, 1))
	axes(&b, max, c.Labels, slot)
	plotH := float64(height - top - bottom)
	for si, s := range c.Series {
		var pts []string
		var dots strings.Builder
		for i := 0; i < n && i < len(s.Values); i++ {
			x := float64(left) + slot*(float64(i)+0.5)
			y := float64(height-bottom) - plotH*clean(s.Values[i])/max
			pts = append(pts, px(x)+","+px(y))
			fmt.Fprintf(&dots, `<circle class="dot s%d" cx="%s" cy="%s" r="2.5"><title>%s %s: %s</title></circle>`,
				si%palette, px(x), px(y), esc(c.Labels[i]), esc(s.Name), num(s.Values[i]))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline class="line s%d" fill="none" points="%s"/>`, si%palette, strings.Join(pts, " "))
			b.WriteString(dots.String())
		}
	}
	legend(&b, c.Series)
	b.WriteString(`</svg>`)
	return b.String()
}

// Histogram draws counts per bin; labels name the bins (e.g. "0–1", "1–2").
func Histogram(title string, labels []string, counts []float64) string {
	return Stacked(Chart{Title: title, Labels: labels, Series: []Series{{Name: "messages", Values: counts}}})
}

// Top draws horizontal bars, largest first as given, the label inside the plot.
func Top(title string, items []Item) string {
	var b strings.Builder
	rowH := 20.0
	h := top + int(rowH)*maxInt(len(items), 1) + 8
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart top" viewBox="0 0 %d %d" role="img" aria-label="%s">`, width, h, esc(title))
	fmt.Fprintf(&b, `<title>%s</title><text class="title" x="8" y="16">%s</text>`, esc(title), esc(title))
	max := 0.0
	for _, it := range items {
		max = math.Max(max, clean(it.Value))
	}
	if max == 0 {
		max = 1
	}
	plotW := float64(width - 8 - 60)
	for i, it := range items {
		y := float64(top) + rowH*float64(i)
		w := math.Max(plotW*clean(it.Value)/max, 1)
		fmt.Fprintf(&b, `<rect class="bar s0" x="8" y="%s" width="%s" height="%s"><title>%s: %s</title></rect>`,
			px(y), px(w), px(rowH-4), esc(it.Label), num(it.Value))
		fmt.Fprintf(&b, `<text class="label" x="12" y="%s">%s</text>`, px(y+rowH-8), esc(it.Label))
		fmt.Fprintf(&b, `<text class="value" x="%s" y="%s">%s</text>`, px(8+w+4), px(y+rowH-8), num(it.Value))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
