package bytesize

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Size{
		"0":                   0,
		"4096":                4096,
		"512B":                512,
		"512 b":               512,
		"64KiB":               64 << 10,
		"64 kib":              64 << 10,
		"32MiB":               32 << 20,
		" 2GiB ":              2 << 30,
		"1TiB":                1 << 40,
		"1EiB":                1 << 60,
		"7EiB":                7 << 60,
		"1kB":                 1000,
		"1KB":                 1000,
		"32MB":                32e6,
		"2GB":                 2e9,
		"1.5GiB":              3 << 29,
		"0.5KiB":              512,
		"1.25kB":              1250,
		"-1":                  -1,
		"9223372036854775807": 1<<63 - 1,
	} {
		got, err := Parse(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

func TestParseErrors(t *testing.T) {
	for in, msg := range map[string]string{
		"":                      "want a number",
		"MiB":                   "want a number",
		"1.":                    "want a number",
		".5MiB":                 "want a number",
		"1.2.3":                 "want a number",
		"32M":                   "could mean powers of 1000 or of 1024: write MB or MiB",
		"32 k":                  "write KB or KiB",
		"32 MiBs":               `unknown unit "MiBs"`,
		"1.5B":                  "not a whole number of bytes",
		"0.1KiB":                "not a whole number of bytes",
		"8EiB":                  "too large",
		"9223372036854775808":   "too large",
		"--1":                   "want a number",
		"1e6":                   `unknown unit "e6"`,
		strings.Repeat("9", 80): "too long",
	} {
		_, err := Parse(in)
		require.ErrorContains(t, err, msg, in)
	}
}

func TestString(t *testing.T) {
	for s, want := range map[Size]string{
		0:           "0B",
		1:           "1B",
		1234:        "1234B",
		1000:        "1kB",
		1024:        "1KiB",
		51200:       "50KiB",
		32 << 20:    "32MiB",
		3 << 29:     "1536MiB",
		32e6:        "32MB",
		-1:          "-1B",
		-(64 << 10): "-64KiB",
		1<<63 - 1:   "9223372036854775807B",
		-1 << 63:    "-9223372036854775808B",
	} {
		require.Equal(t, want, s.String(), int64(s))
	}
}

func TestYAML(t *testing.T) {
	var c struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
		C Size `yaml:"c"`
	}
	require.NoError(t, yaml.Unmarshal([]byte("a: 32MiB\nb: 4096\nc: \"1 GB\"\n"), &c))
	require.Equal(t, 32*MiB, c.A)
	require.Equal(t, Size(4096), c.B)
	require.Equal(t, GB, c.C)

	out, err := yaml.Marshal(c)
	require.NoError(t, err)
	require.Equal(t, "a: 32MiB\nb: 4KiB\nc: 1GB\n", string(out))

	// Every bad value is reported, each with its line.
	err = yaml.Unmarshal([]byte("a: 32 MiBs\nb: [1]\nc: 3M\n"), &c)
	require.ErrorContains(t, err, `line 1: size "32 MiBs": unknown unit "MiBs"`)
	require.ErrorContains(t, err, "line 2: a size is a number of bytes such as 4096 or 32MiB, not a list")
	require.ErrorContains(t, err, `line 3: size "3M": unit "M" could mean`)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "32MiB", "1.5 GiB", "-1", "9223372036854775807B", "8EiB", "1.", "3M", "0.001kB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		// What String prints parses back to the same size.
		back, err := Parse(v.String())
		if err != nil || back != v {
			t.Fatalf("Parse(%q) = %d, String %q, back %d, %v", s, v, v.String(), back, err)
		}
	})
}
