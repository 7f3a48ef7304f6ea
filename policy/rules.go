package policy

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// RuleSpec is one rule as written in the rule file, before compilation.
//
//   - name: zen
//     stage: rcpt                  # optional: inferred from what the rule references
//     if: zen.listed && !client.authenticated
//     reject: 554 5.7.1 "client {{client.ip}} is listed"
//
// A rule has at most one terminal action (accept, reject, tempfail, discard, quarantine)
// and any number of non-terminal ones (score, add_header, tag). log_only turns the rule
// into a dry run: a match is logged and counted but has no effect.
type RuleSpec struct {
	Name       string
	Stage      string
	If         string
	Accept     *string // reply text for accept ("" = default 250)
	Reject     *string
	Tempfail   *string
	Discard    bool
	Quarantine bool
	Score      float64
	AddHeader  []string
	Tag        []string
	LogOnly    bool
	// Category is the class the rule's decisions are counted in (the decision log, the
	// charts, the portcullis_decisions_total metric); "" means the rule's name. Several
	// rules can share one, e.g. "RBL" or "Header Subject".
	Category string

	File string // where the rule was read from, for errors
	Line int    // line of the rule in File
	// IfLine and IfColumn locate the `if` expression, so that expression errors point at
	// the right column of the file.
	IfLine, IfColumn int
	// block is true when `if` is a YAML block scalar (its text starts on the next line).
	block bool
}

// RuleError is a load error in a rule file: the file, the line, the rule and the column.
type RuleError struct {
	File   string
	Line   int
	Column int
	Rule   string
	Msg    string
}

func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": rule %q", e.Rule)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every error found in a rule file; Compile reports them all, not just the
// first, so that `portcullis rules check` shows everything at once.
type ErrorList []error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Errors returns the individual errors of err if it is an ErrorList, else err itself.
func Errors(err error) []error {
	var l ErrorList
	if errors.As(err, &l) {
		return l
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// ParseRules reads the `rules:` list of a rule file. data may be the whole file (other
// top-level keys such as `policies:` are left to the caller) or just the list. Unknown keys
// in a rule are errors that name the key.
func ParseRules(data []byte, file string) ([]RuleSpec, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &RuleError{File: file, Msg: err.Error()}
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	list := root.Content[0]
	if list.Kind == yaml.MappingNode {
		list = nil
		for i := 0; i+1 < len(root.Content[0].Content); i += 2 {
			if root.Content[0].Content[i].Value == "rules" {
				list = root.Content[0].Content[i+1]
			}
		}
		if list == nil {
			return nil, nil
		}
	}
	if list.Kind != yaml.SequenceNode {
		return nil, &RuleError{File: file, Line: list.Line, Msg: "rules must be a list"}
	}
	var specs []RuleSpec
	var errs ErrorList
	for _, n := range list.Content {
		s, err := parseRule(n, file)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		specs = append(specs, s)
	}
	if len(errs) > 0 {
		return specs, errs
	}
	return specs, nil
}

func parseRule(n *yaml.Node, file string) (RuleSpec, ErrorList) {
	s := RuleSpec{File: file, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		return s, ErrorList{&RuleError{File: file, Line: n.Line, Msg: "a rule must be a mapping with name, if and an action"}}
	}
	var errs ErrorList
	fail := func(k *yaml.Node, format string, a ...any) {
		errs = append(errs, &RuleError{File: file, Line: k.Line, Column: k.Column, Rule: s.Name, Msg: fmt.Sprintf(format, a...)})
	}
	// The name first, so that every error can carry it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			s.Name = n.Content[i+1].Value
		}
	}
	// The fields of the action keys, by key.
	replies := map[string]**string{"accept": &s.Accept, "reject": &s.Reject, "tempfail": &s.Tempfail}
	flags := map[string]*bool{"discard": &s.Discard, "quarantine": &s.Quarantine, "log_only": &s.LogOnly}
	lists := map[string]*[]string{"add_header": &s.AddHeader, "tag": &s.Tag}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			fail(k, "key %q given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "name":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				fail(v, "name must be a non-empty string")
			}
		case "stage":
			s.Stage = v.Value
		case "category":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				fail(v, "category must be a non-empty string")
				continue
			}
			s.Category = v.Value
		case "if":
			if v.Kind != yaml.ScalarNode {
				fail(v, "if must be an expression string")
				continue
			}
			s.If, s.IfLine, s.IfColumn = v.Value, v.Line, v.Column
			s.block = v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
			if v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
				s.IfColumn++
			}
		case "accept", "reject", "tempfail":
			var reply *string
			switch {
			case v.Kind == yaml.ScalarNode && v.Tag == "!!bool" && v.Value == "true", v.Tag == "!!null":
				empty := ""
				reply = &empty
			case v.Kind == yaml.ScalarNode && v.Tag == "!!bool":
				continue // accept: false means no action
			case v.Kind == yaml.ScalarNode:
				t := v.Value
				reply = &t
			default:
				fail(v, "%s takes a reply such as 554 5.7.1 \"text\", or true", k.Value)
				continue
			}
			*replies[k.Value] = reply
		case "discard", "quarantine", "log_only":
			var b bool
			if err := v.Decode(&b); err != nil {
				fail(v, "%s must be true or false", k.Value)
				continue
			}
			*flags[k.Value] = b
		case "score":
			if err := v.Decode(&s.Score); err != nil {
				fail(v, "score must be a number")
			}
		case "add_header", "tag":
			var list []string
			if v.Kind == yaml.ScalarNode {
				list = []string{v.Value}
			} else if err := v.Decode(&list); err != nil {
				fail(v, "%s must be a string or a list of strings", k.Value)
				continue
			}
			*lists[k.Value] = list
		default:
			fail(k, "unknown key %q (known: name, stage, category, if, accept, reject, tempfail, discard, quarantine, score, add_header, tag, log_only)", k.Value)
		}
	}
	if s.Name == "" {
		errs = append(errs, &RuleError{File: file, Line: n.Line, Msg: "rule has no name"})
	}
	if s.If == "" && len(errs) == 0 {
		errs = append(errs, &RuleError{File: file, Line: n.Line, Rule: s.Name, Msg: "rule has no if expression (write if: true for a rule that always applies)"})
	}
	return s, errs
}
