// Package bytesize is the one type of every size in portcullis's configuration: a
// number of bytes, written in YAML (or any text) as a plain integer or with a unit.
//
//	max_message_size: 32MiB    # 33554432 bytes
//	memory: 64 KiB             # a space between number and unit is allowed
//	quota: 1.5GiB              # a fraction, when it comes to whole bytes
//	max_line_size: 4096        # no unit: bytes
//
// Binary units are powers of 1024 (KiB, MiB, GiB, TiB, PiB, EiB); decimal units are
// powers of 1000 (kB, MB, GB, TB, PB, EB), as in IEC 80000-13, so 32MB is 32,000,000
// bytes. B is a byte. Units are matched without regard to case ("64kib" is 64 KiB); a
// bare K, M or G is refused, since it could mean either.
//
// String prints a size canonically, in the unit that divides it exactly with the smallest
// number: 33554432 prints as 32MiB, 51200 as 50KiB, 32000000 as 32MB, 1234 as 1234B.
// Parse reads back what String prints.
package bytesize

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size is a number of bytes.
type Size int64

// Units.
const (
	B   Size = 1
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
	PiB Size = 1 << 50
	EiB Size = 1 << 60

	KB Size = 1e3
	MB Size = 1e6
	GB Size = 1e9
	TB Size = 1e12
	PB Size = 1e15
	EB Size = 1e18
)

// units with their canonical spelling, largest first.
var units = []struct {
	name string
	size Size
}{
	{"EiB", EiB}, {"PiB", PiB}, {"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"EB", EB}, {"PB", PB}, {"TB", TB}, {"GB", GB}, {"MB", MB}, {"kB", KB},
}

// maxLen bounds the text Parse looks at; no valid size is longer.
const maxLen = 64

// Parse reads a size: an optional minus sign, digits with an optional fraction, and an
// optional unit, possibly after spaces. A fraction must come to whole bytes.
func Parse(s string) (Size, error) {
	if len(s) > maxLen {
		return 0, fmt.Errorf("size %.20q...: too long", s)
	}
	text := strings.TrimSpace(s)
	neg := strings.HasPrefix(text, "-")
	if neg {
		text = text[1:]
	}
	i := 0
	for i < len(text) && (text[i] >= '0' && text[i] <= '9' || text[i] == '.') {
		i++
	}
	num, unitText := text[:i], strings.TrimSpace(text[i:])
	whole, frac, hasDot := strings.Cut(num, ".")
	if whole == "" || strings.Contains(frac, ".") || hasDot && frac == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with a unit such as KiB, MiB or GiB", s)
	}
	unit, err := parseUnit(unitText)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	// (whole.frac) × unit, exactly: digits × unit / 10^len(frac).
	n, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return 0, fmt.Errorf("size %q: bad number", s)
	}
	n.Mul(n, big.NewInt(int64(unit)))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(n, den, new(big.Int))
	if r.Sign() != 0 {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	v := q.Int64()
	if neg {
		v = -v
	}
	return Size(v), nil
}

// parseUnit reads a unit name, any case; "" is bytes.
func parseUnit(u string) (Size, error) {
	switch strings.ToLower(u) {
	case "", "b":
		return B, nil
	case "kb":
		return KB, nil
	case "kib":
		return KiB, nil
	case "k", "m", "g", "t", "p", "e":
		return 0, fmt.Errorf("unit %q could mean powers of 1000 or of 1024: write %sB or %siB", u, strings.ToUpper(u), strings.ToUpper(u))
	}
	for _, x := range units {
		if strings.EqualFold(u, x.name) {
			return x.size, nil
		}
	}
	return 0, fmt.Errorf("unknown unit %q (want B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)", u)
}

// String prints s in the unit that divides it exactly with the smallest quotient, else in
// bytes: "32MiB", "32MB", "50KiB", "1234B", "0B".
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	if s == math.MinInt64 { // has no positive counterpart to divide
		return strconv.FormatInt(int64(s), 10) + "B"
	}
	sign, v := "", s
	if v < 0 {
		sign, v = "-", -v
	}
	q, name := v, "B"
	for _, u := range units {
		if v%u.size == 0 && v/u.size < q {
			q, name = v/u.size, u.name
		}
	}
	return sign + strconv.FormatInt(int64(q), 10) + name
}

// MarshalText returns String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses text with Parse.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := Parse(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalYAML decodes an integer (bytes) or a string with a unit; a bad value is a
// *yaml.TypeError naming the line, reported with the document's other errors.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a size is a number of bytes such as 4096 or 32MiB, not a %s", n.Line, kindName(n.Kind))}}
	}
	v, err := Parse(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*s = v
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "non-scalar"
}
