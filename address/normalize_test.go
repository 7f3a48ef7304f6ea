package address

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":            "alice@example.org",
		"Alice.Smith@Example.ORG":      "alice.smith@example.org",
		"alice+tag@example.org.":       "alice+tag@example.org",
		"Jürgen@Bücher.Example":        "jürgen@xn--bcher-kva.example",
		"a@XN--BCHER-KVA.example":      "a@xn--bcher-kva.example",
		"o'brien@example.org":          "o'brien@example.org",
		"#!$&*=?^_`{|}~-@example.org":  "", // "!" is a routing character
		"#$&*=?^_`{|}~-/@example.org":  "#$&*=?^_`{|}~-/@example.org",
		"postmaster@localhost":         "postmaster@localhost",
		"ΣΊΣΥΦΟΣ@example.org":          "σίσυφοσ@example.org",
		"e\u0301@example.org":          "\u00e9@example.org", // NFC
		"":                             "",
		"alice":                        "",
		"@example.org":                 "",
		"alice@":                       "",
		"a..b@example.org":             "",
		".a@example.org":               "",
		"a.@example.org":               "",
		"\"a b\"@example.org":          "",
		"a b@example.org":              "",
		"a\x00b@example.org":           "",
		"a%b@example.org":              "",
		"a@b@example.org":              "",
		"a@-example.org":               "",
		"a@exa_mple.org":               "",
		"a@[192.0.2.1]":                "",
		"a\xff@example.org":            "",
		"a\u200b@example.org":          "", // zero-width space (format character)
		strings.Repeat("a", 64) + "@x": strings.Repeat("a", 64) + "@x",
		strings.Repeat("a", 65) + "@x": "",
	} {
		got, err := Normalize(in)
		if want == "" {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("Normalize(%q) = %q, %v; want ErrInvalid", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
