package policy

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// template is reply or header text with {{ expression }} parts, compiled against the same
// environment as the rule's condition.
type template struct {
	lits  []string // len(lits) == len(progs)+1
	progs []*vm.Program
}

// templateExprs returns the expression sources of the {{ }} parts of s.
func templateExprs(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			return out
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return out
		}
		out = append(out, strings.TrimSpace(s[i+2:i+j]))
		s = s[i+j+2:]
	}
}

func compileTemplate(s string, env map[string]any) (*template, error) {
	t := &template{}
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.lits = append(t.lits, s)
			return t, nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", s)
		}
		src := strings.TrimSpace(s[i+2 : i+j])
		p, err := expr.Compile(src, append([]expr.Option{expr.Env(env)}, staticFuncs...)...)
		if err != nil {
			return nil, fmt.Errorf("{{%s}}: %w", src, err)
		}
		t.lits = append(t.lits, s[:i])
		t.progs = append(t.progs, p)
		s = s[i+j+2:]
	}
}

// render evaluates the template. Values are printed with %v; CR, LF and other control
// characters are replaced so that a value from a message can never inject a reply line or
// a header.
func (t *template) render(v *vm.VM, env map[string]any) string {
	if t == nil {
		return ""
	}
	var b strings.Builder
	for i, lit := range t.lits {
		b.WriteString(lit)
		if i < len(t.progs) {
			out, err := v.Run(t.progs[i], env)
			if err != nil {
				b.WriteString("?")
				continue
			}
			if ss, ok := out.([]string); ok {
				out = strings.Join(ss, ",")
			}
			b.WriteString(sanitizeLine(fmt.Sprint(out)))
		}
	}
	return b.String()
}

func sanitizeLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
