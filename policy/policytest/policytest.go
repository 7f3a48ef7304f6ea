// Package policytest helps policy packages test their documentation: ReadmeRules reads
// the rule examples of a README and CompileReadme compiles them with the real rule
// compiler against real policy instances, so a README cannot show a rule that would not
// load.
package policytest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/policy"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// ReadmeRules returns the rules of every YAML block of the file that holds rules (a
// rules: list, or a bare list of rules with if: conditions).
func ReadmeRules(t testing.TB, path string) []policy.RuleSpec {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var all []policy.RuleSpec
	for _, m := range yamlBlock.FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(m[1], "if:") {
			continue // a config example
		}
		specs, err := policy.ParseRules([]byte(m[1]), path)
		if err != nil {
			t.Fatalf("%s: a rules block does not parse: %v", path, err)
		}
		all = append(all, specs...)
	}
	if len(all) == 0 {
		t.Fatalf("%s has no rule examples", path)
	}
	return all
}

// CompileReadme compiles the README's rules against policies (by instance name) and
// returns them. Rule names may repeat across examples, so each block compiles on its own.
func CompileReadme(t testing.TB, path string, policies map[string]policy.Policy) []policy.RuleSpec {
	t.Helper()
	specs := ReadmeRules(t, path)
	for _, s := range specs {
		if err := policy.Compile([]policy.RuleSpec{s}, policies, nil); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	return specs
}

// CompileReadmeOf is the README test of a package with one policy: it stops the test when
// the policy's constructor returned err, and compiles the rules of the package's
// README.md against p under the instance name.
func CompileReadmeOf(t testing.TB, name string, p policy.Policy, err error) []policy.RuleSpec {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return CompileReadme(t, "README.md", map[string]policy.Policy{name: p})
}
