package content

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files (and the generated samples) under testdata/")

// goldenFacts is what the golden files hold: the policy facts plus the text.
func goldenFacts(m *Message) map[string]any {
	f := Facts(m)
	text := m.Text
	if len(text) > 400 {
		text = text[:400]
	}
	f["text"] = text
	return f
}

// TestSamplesCommitted checks that the generated samples in testdata are the ones the
// generator builds (run with -update after changing the generator).
func TestSamplesCommitted(t *testing.T) {
	for name, data := range samples() {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestSamplesCommitted -update)", err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s differs from the generator's output (run with -update)", path)
		}
	}
}

// TestGolden walks every testdata/*.eml and compares its facts with the .golden.json
// beside it.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if len(files) < 10 {
		t.Fatalf("only %d golden messages", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := WalkBytes(raw, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(goldenFacts(m), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			gf := strings.TrimSuffix(f, ".eml") + ".golden.json"
			if *update {
				if err := os.WriteFile(gf, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gf)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("facts differ from %s (run with -update and review the diff):\n%s", gf, got)
			}
		})
	}
}
