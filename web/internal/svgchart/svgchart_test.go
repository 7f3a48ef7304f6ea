package svgchart

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// elements parses svg as XML (so it must be well-formed) and returns its elements by name.
func elements(t *testing.T, svg string) map[string][]xml.StartElement {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	out := map[string][]xml.StartElement{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			out[se.Name.Local] = append(out[se.Name.Local], se)
		}
	}
}

func attr(se xml.StartElement, name string) float64 {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			v, _ := strconv.ParseFloat(a.Value, 64)
			return v
		}
	}
	return -1
}

func TestStackedHeightsAreProportional(t *testing.T) {
	svg := Stacked(Chart{Title: "Policies' efficiency", Labels: []string{"Mon", "Tue"},
		Series: []Series{{Name: "rbl", Values: []float64{30, 10}}, {Name: "body", Values: []float64{10, 0}}}})
	bars := []xml.StartElement{}
	for _, r := range elements(t, svg)["rect"] {
		if attr(r, "height") > 10 || strings.Contains(fmt.Sprint(r.Attr), "bar") {
			bars = append(bars, r)
		}
	}
	if len(bars) != 3 { // a zero value draws nothing
		t.Fatalf("got %d bars, want 3:\n%s", len(bars), svg)
	}
	// max 40 → axis 50; plot height 196: 30 → 117.6, 10 → 39.2.
	if h := attr(bars[0], "height"); h != 117.6 {
		t.Errorf("rbl Monday height %v, want 117.6", h)
	}
	if h := attr(bars[1], "height"); h != 39.2 {
		t.Errorf("body Monday height %v, want 39.2", h)
	}
	// Stacked: the second bar sits on the first.
	if attr(bars[1], "y")+attr(bars[1], "height") != attr(bars[0], "y") {
		t.Errorf("body bar not stacked on rbl: %v %v", bars[1].Attr, bars[0].Attr)
	}
	if !strings.Contains(svg, "<title>Mon rbl: 30</title>") {
		t.Errorf("no value tooltip:\n%s", svg)
	}
}

func TestLabelsEscaped(t *testing.T) {
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	for name, svg := range map[string]string{
		"stacked": Stacked(Chart{Title: evil, Labels: []string{evil}, Series: []Series{{Name: evil, Values: []float64{1}}}}),
		"lines":   Lines(Chart{Title: evil, Labels: []string{evil}, Series: []Series{{Name: evil, Values: []float64{1}}}}),
		"top":     Top(evil, []Item{{Label: evil, Value: 3}}),
		"hist":    Histogram(evil, []string{evil}, []float64{2}),
	} {
		if strings.Contains(svg, "<script") || strings.Contains(svg, "<img") {
			t.Errorf("%s: markup not escaped:\n%s", name, svg)
		}
		if !strings.Contains(svg, "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img") {
			t.Errorf("%s: escaped label missing:\n%s", name, svg)
		}
		els := elements(t, svg)
		if len(els["script"]) > 0 || len(els["img"]) > 0 {
			t.Errorf("%s: element injected", name)
		}
	}
}

func TestLinesAndTop(t *testing.T) {
	svg := Lines(Chart{Title: "traffic", Labels: []string{"00", "01", "02"},
		Series: []Series{{Name: "accepted", Values: []float64{1, 5, 2}}, {Name: "rejected", Values: []float64{0, 1, 0}}}})
	els := elements(t, svg)
	if len(els["polyline"]) != 2 || len(els["circle"]) != 6 {
		t.Errorf("lines: %d polylines, %d dots; want 2 and 6", len(els["polyline"]), len(els["circle"]))
	}
	top := Top("top senders", []Item{{"a@example.org", 10}, {"b@example.org", 5}})
	var widths []float64
	for _, r := range elements(t, top)["rect"] {
		widths = append(widths, attr(r, "width"))
	}
	if len(widths) != 2 || widths[0] != 2*widths[1] {
		t.Errorf("top bar widths %v, want the first twice the second", widths)
	}
}

func TestDegenerateInput(t *testing.T) {
	// No data, negative and NaN values, ragged series: a chart still, never a panic.
	for _, svg := range []string{
		Stacked(Chart{}),
		Lines(Chart{Labels: []string{"a", "b"}, Series: []Series{{Name: "x", Values: []float64{-1}}}}),
		Stacked(Chart{Labels: make([]string, 400), Series: []Series{{Name: "x", Values: []float64{0}}}}),
		Top("none", nil),
	} {
		elements(t, svg)
	}
}

func ExampleStacked() {
	svg := Stacked(Chart{Title: "Blocked per day", Labels: []string{"Mon"},
		Series: []Series{{Name: "RBL", Values: []float64{3}}}})
	fmt.Println(strings.HasPrefix(svg, "<svg"), strings.Contains(svg, "Mon RBL: 3"))
	// Output: true true
}
