package address_test

import (
	"fmt"
	"testing"

	"github.com/portcullis-mail/portcullis/address"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]address.Address{
		"":                       {},
		"<>":                     {},
		"<Alice@Example.ORG.>":   {Raw: "Alice@Example.ORG.", Local: "Alice", Domain: "example.org"},
		`"a@b"@example.org`:      {Raw: `"a@b"@example.org`, Local: "a@b", Domain: "example.org"},
		`"a\"b"@example.org`:     {Raw: `"a\"b"@example.org`, Local: `a"b`, Domain: "example.org"},
		"postmaster":             {Raw: "postmaster", Local: "postmaster"},
		"user%other@example.org": {Raw: "user%other@example.org", Local: "user%other", Domain: "example.org"},
	} {
		if got := address.Parse(in); got != want {
			t.Errorf("Parse(%q) = %+v, want %+v", in, got, want)
		}
	}
	if a := address.Parse("<>"); !a.IsNull() || a.String() != "" {
		t.Errorf("null path: %+v", a)
	}
	if s := address.Parse("<A@B.example>").String(); s != "A@b.example" {
		t.Errorf("String = %q", s)
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct{ in, local, domain string }{
		{"user@Example.ORG.", "user", "example.org"},
		{`"a@b"@example.org`, `"a@b"`, "example.org"},
		{"user", "user", ""},
		{"@example.org", "@example.org", ""},
		{"user@", "user@", ""},
	} {
		l, d, ok := address.Split(c.in)
		if l != c.local || d != c.domain || ok != (c.domain != "") {
			t.Errorf("Split(%q) = %q, %q, %v", c.in, l, d, ok)
		}
		if got := address.Domain(c.in); c.domain != "" && got != c.domain {
			t.Errorf("Domain(%q) = %q", c.in, got)
		}
	}
	if d := address.Domain("nodomain"); d != "" {
		t.Errorf("Domain without @ = %q", d)
	}
}

func TestStripExtension(t *testing.T) {
	for _, c := range []struct{ local, delims, want string }{
		{"user+tag", "+", "user"},
		{"user+tag+more", "+", "user"},
		{"user-tag", "+", "user-tag"},
		{"user-tag", "+-", "user"},
		{"user+a-b", "-+", "user"},
		{"+tag", "+", "+tag"}, // nothing before the delimiter: not an extension
		{"user+tag", "", "user+tag"},
	} {
		if got := address.StripExtension(c.local, c.delims); got != c.want {
			t.Errorf("StripExtension(%q, %q) = %q, want %q", c.local, c.delims, got, c.want)
		}
	}
}

func Example() {
	a := address.Parse("<Alice+lists@Example.ORG>")
	fmt.Println(a.Local, a.Domain)
	fmt.Println(address.StripExtension(a.Local, "+"))
	user, err := address.Normalize("Alice@Example.ORG")
	fmt.Println(user, err)
	// Output:
	// Alice+lists example.org
	// Alice
	// alice@example.org <nil>
}
