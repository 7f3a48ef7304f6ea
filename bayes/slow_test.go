package bayes

import (
	"strings"
	"testing"
	"time"
)

// TestTokenizerLinear feeds large adversarial inputs; each must tokenize quickly
// (the limits and the linear scanners keep every pass over the input bounded).
func TestTokenizerLinear(t *testing.T) {
	const n = 1 << 20
	html := "Content-Type: text/html\n\n"
	mp := "Content-Type: multipart/mixed; boundary=b\n\n"
	cases := map[string]string{
		"lt":             html + strings.Repeat("<", n),
		"amp":            html + strings.Repeat("&", n),
		"script":         html + strings.Repeat("<script>", n/8),
		"comment":        html + strings.Repeat("<!--", n/4),
		"attrs":          html + "<a " + strings.Repeat("href=x ", n/7) + ">",
		"attrs-unquoted": html + "<a " + strings.Repeat("src=\"", n/5) + ">",
		"boundaries":     mp + strings.Repeat("--b\n", n/4),
		"nested":         strings.Repeat(mp+"--b\n", n/50),
		"headers":        strings.Repeat("X-A: b\n", n/7),
		"folded":         "Subject: a\n" + strings.Repeat(" b\n", n/3),
		"encoded-words":  "Subject: " + strings.Repeat("=?utf-8?q?a?= ", n/14) + "\n\n",
		"long-word":      "\n" + strings.Repeat("a", n),
		"urls":           "\n" + strings.Repeat("http://a/b/c?d=e&f ", n/20),
		"emails":         "\n" + strings.Repeat("a@b.c ", n/6),
		"qp":             "Content-Transfer-Encoding: quoted-printable\n\n" + strings.Repeat("=", n),
		"b64":            "Content-Transfer-Encoding: base64\n\n" + strings.Repeat("!", n),
		"comments":       "Content-Type: text/html\n\n" + strings.Repeat("<!--a>", n/6),
		"styles":         "Content-Type: text/html\n\n" + strings.Repeat("<style>", n/7),
		"received":       strings.Repeat("Received: from a.b (c.d [1.2.3.4]) by e.f\n", n/44),
	}
	tok := NewTokenizer(DefaultTokenizerConfig())
	for name, c := range cases {
		start := time.Now()
		tok.Hashes(nil, []byte(c))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: %v for %d bytes", name, d, len(c))
		}
	}
}
