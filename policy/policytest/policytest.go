// Package policytest helps policy packages test their documentation: ReadmeRules reads
// the rule examples of a README and CompileReadme compiles them with the real rule
// compiler against real policy instances, so a README cannot show a rule that would not
// load; ReadmeSection, YAMLBlocks and DecodeStrict read a README's config examples as
// the server would.
package policytest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/policy"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// ReadmeSection returns the section of the markdown file path that starts with the
// heading line heading ("## Config"), up to the next heading of the same level; the whole
// file when heading is "". It stops the test when the file or the heading is missing.
func ReadmeSection(t testing.TB, path, heading string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md := string(raw)
	if heading == "" {
		return md
	}
	i := strings.Index("\n"+md, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no section %q", path, heading)
	}
	md = md[i:]
	level, _, _ := strings.Cut(heading, " ")
	if j := strings.Index(md[len(heading):], "\n"+level+" "); j >= 0 {
		md = md[:len(heading)+j+1]
	}
	return md
}

// YAMLBlocks returns the fenced yaml blocks of a markdown text, in order.
func YAMLBlocks(md string) []string {
	var out []string
	for _, m := range yamlBlock.FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// DecodeStrict decodes the YAML doc into v with unknown keys rejected, as the server's
// config loader does.
func DecodeStrict(doc string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// ReadmeRules returns the rules of every YAML block of the file that holds rules (a
// rules: list, or a bare list of rules with if: conditions).
func ReadmeRules(t testing.TB, path string) []policy.RuleSpec {
	t.Helper()
	var all []policy.RuleSpec
	for _, b := range YAMLBlocks(ReadmeSection(t, path, "")) {
		if !strings.Contains(b, "if:") {
			continue // a config example
		}
		specs, err := policy.ParseRules([]byte(b), path)
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
