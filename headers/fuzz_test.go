package headers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var mapSeeds = []string{
	"/^Subject: (.*)foo/ REJECT got $1\n",
	"if /^X-/\n/^X-B: (.*)/ HOLD $1 ${1} $(1) $$\nif !/no/\n/c/ DISCARD\nendif\nendif\n",
	"/(a)\\1/ WARN backref\n/(?<=x)y/ OK\n",
	"# comment\n/a/\n  REJECT continued\n",
	"|a/b| OK\n/a\\/b/x OK\n/[/ OK\n",
	"/^Content-(Type|Disposition):.*name=\"?[^\"]*\\.(exe|pif)/ REJECT .$2\n",
}

func FuzzParseMap(f *testing.F) {
	for _, s := range mapSeeds {
		f.Add(s, "Subject: abcfoo\nX-B: no")
	}
	f.Fuzz(func(t *testing.T, table, input string) {
		for _, syn := range []Syntax{PCRE, Regexp} {
			m, err := ParseMap("fuzz", strings.NewReader(table), syn, 10*time.Millisecond)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "headers: fuzz:") {
					t.Fatalf("error without file and line: %v", err)
				}
				continue
			}
			m.ValidateActions()
			for _, line := range strings.Split(input, "\n") {
				m.Lookup(line)
			}
		}
	})
}

// TestWriteFuzzSeeds writes testdata/fuzz/FuzzParseMap with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PORTCULLIS_WRITE_SEEDS") == "" {
		t.Skip("set PORTCULLIS_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseMap")
	os.MkdirAll(dir, 0o755)
	for i, s := range mapSeeds {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\nstring(%q)\n", s, "Subject: abcfoo\nX-B: zz\nc")
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
