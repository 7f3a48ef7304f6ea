package headers

import (
	"os"
	"regexp"
	"testing"

	"github.com/expr-lang/expr"
	"go.yaml.in/yaml/v3"
)

// ruleEnv builds the environment rules see for a policy instance: its declared facts
// and the standard result fields.
func ruleEnv(facts map[string]any) map[string]any {
	env := map[string]any{"status": "pass", "score": 0.0, "reason": "", "error": "", "facts": facts}
	for k, v := range facts {
		env[k] = v
	}
	return env
}

// TestReadmeRules parses every YAML block of README.md and compiles each rule's `if`
// against the facts the policies declare.
func TestReadmeRules(t *testing.T) {
	maps, err := New(Config{}, Tables{Header: &Map{Name: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	date, _ := NewDate(DateConfig{})
	env := map[string]any{"maps": ruleEnv(maps.DeclareFacts()), "date": ruleEnv(date.DeclareFacts())}
	compileReadme(t, "README.md", env, 7)
}

func compileReadme(t *testing.T, file string, env map[string]any, min int) {
	b, err := os.ReadFile(file)
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
			t.Errorf("%s: YAML block does not parse: %v\n%s", file, err, m[1])
			continue
		}
		for _, r := range doc.Rules {
			src, _ := r["if"].(string)
			if _, err := expr.Compile(src, expr.Env(env), expr.AsBool()); err != nil {
				t.Errorf("%s: rule %v: %v", file, r["name"], err)
			}
			n++
		}
	}
	if n < min {
		t.Errorf("%s: %d rules compiled, expected at least %d", file, n, min)
	}
}
