package content

import (
	"os"
	"regexp"
	"testing"

	"github.com/expr-lang/expr"
	"go.yaml.in/yaml/v3"
)

// TestReadmeRules parses every YAML block of README.md and compiles each rule's `if`
// against the facts the policy declares.
func TestReadmeRules(t *testing.T) {
	p, _ := New(Config{})
	facts := p.DeclareFacts()
	inst := map[string]any{"status": "pass", "score": 0.0, "reason": "", "error": "", "facts": facts}
	for k, v := range facts {
		inst[k] = v
	}
	env := map[string]any{"content": inst}
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1) {
		var doc struct {
			Policies map[string]any
			Rules    []map[string]any
		}
		if err := yaml.Unmarshal(m[1], &doc); err != nil {
			t.Errorf("YAML block does not parse: %v\n%s", err, m[1])
			continue
		}
		for _, r := range doc.Rules {
			src, _ := r["if"].(string)
			if _, err := expr.Compile(src, expr.Env(env), expr.AsBool()); err != nil {
				t.Errorf("rule %v: %v", r["name"], err)
			}
			n++
		}
	}
	if n < 5 {
		t.Errorf("%d rules compiled, want 5", n)
	}
}
