package sieve

import (
	"fmt"
	"strings"
)

// CompileError is one error in a script, at its line and column.
type CompileError struct {
	Line, Col int
	Msg       string
}

func (e *CompileError) Error() string { return fmt.Sprintf("line %d:%d: %s", e.Line, e.Col, e.Msg) }

// ErrorList is what Compile returns when a script holds several errors, in order.
type ErrorList []*CompileError

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

type argKind uint8

const (
	aTag argKind = iota
	aNumber
	aString     // a single string
	aStringList // a bracketed list, possibly of one
)

// sval is one string literal of the script with its position.
type sval struct {
	s         string
	pos       Pos
	multiline bool
}

type argument struct {
	kind argKind
	pos  Pos
	tag  string
	num  int64
	strs []sval
}

func (a *argument) isStrings() bool { return a.kind == aString || a.kind == aStringList }

func (a *argument) describe() string {
	switch a.kind {
	case aTag:
		return "tag ':" + a.tag + "'"
	case aNumber:
		return "number"
	case aString:
		return "string"
	}
	return "string list"
}

// node is a command or a test of the syntax tree (RFC 5228 §8.2).
type node struct {
	pos   Pos
	name  string
	args  []*argument
	tests []*node
	block []*node // commands only
	// hasBlock is set for a command followed by { } (even empty).
	hasBlock bool
	// testList is set when tests were given in parentheses.
	testList bool
}

type parser struct {
	lex      lexer
	tok      token
	maxDepth int
	depth    int
}

func (p *parser) advance() *CompileError {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errf(pos Pos, format string, args ...any) *CompileError {
	return &CompileError{Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) punct(s string) bool { return p.tok.kind == tPunct && p.tok.text == s }

func parse(src []byte, maxDepth, maxString int) ([]*node, *CompileError) {
	p := &parser{lex: lexer{src: src, line: 1, col: 1, maxString: maxString}, maxDepth: maxDepth}
	if err := p.advance(); err != nil {
		return nil, err
	}
	cmds, err := p.commands()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errf(p.tok.pos, "unexpected %s", p.tok.describe())
	}
	return cmds, nil
}

func (p *parser) commands() ([]*node, *CompileError) {
	var cmds []*node
	for p.tok.kind == tIdent {
		c, err := p.command()
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

func (p *parser) nest(pos Pos) *CompileError {
	p.depth++
	if p.maxDepth > 0 && p.depth > p.maxDepth {
		return p.errf(pos, "nesting exceeds the limit of %d levels", p.maxDepth)
	}
	return nil
}

func (p *parser) command() (*node, *CompileError) {
	n := &node{pos: p.tok.pos, name: strings.ToLower(p.tok.text)}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if err := p.arguments(n); err != nil {
		return nil, err
	}
	switch {
	case p.punct(";"):
		return n, p.advance()
	case p.punct("{"):
		if err := p.nest(p.tok.pos); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		n.hasBlock = true
		b, err := p.commands()
		if err != nil {
			return nil, err
		}
		n.block = b
		if !p.punct("}") {
			return nil, p.errf(p.tok.pos, "expected a command or '}' but found %s", p.tok.describe())
		}
		p.depth--
		return n, p.advance()
	}
	return nil, p.errf(p.tok.pos, "expected ';' or '{' after command '%s' but found %s", n.name, p.tok.describe())
}

// arguments reads the arguments and the test or test list of a command or test.
func (p *parser) arguments(n *node) *CompileError {
	for {
		a := &argument{pos: p.tok.pos}
		switch {
		case p.tok.kind == tTag:
			a.kind, a.tag = aTag, strings.ToLower(p.tok.text)
		case p.tok.kind == tNumber:
			a.kind, a.num = aNumber, p.tok.num
		case p.tok.kind == tString:
			a.kind, a.strs = aString, []sval{{p.tok.text, p.tok.pos, p.tok.multiline}}
		case p.punct("["):
			if err := p.advance(); err != nil {
				return err
			}
			a.kind = aStringList
			for {
				if p.tok.kind != tString {
					return p.errf(p.tok.pos, "expected a string in the string list but found %s", p.tok.describe())
				}
				a.strs = append(a.strs, sval{p.tok.text, p.tok.pos, p.tok.multiline})
				if err := p.advance(); err != nil {
					return err
				}
				if p.punct("]") {
					break
				}
				if !p.punct(",") {
					return p.errf(p.tok.pos, "expected ',' or ']' in the string list but found %s", p.tok.describe())
				}
				if err := p.advance(); err != nil {
					return err
				}
			}
		default:
			goto tests
		}
		n.args = append(n.args, a)
		if err := p.advance(); err != nil {
			return err
		}
	}
tests:
	switch {
	case p.tok.kind == tIdent:
		t, err := p.test()
		if err != nil {
			return err
		}
		n.tests = []*node{t}
	case p.punct("("):
		if err := p.nest(p.tok.pos); err != nil {
			return err
		}
		n.testList = true
		for {
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tIdent {
				return p.errf(p.tok.pos, "expected a test but found %s", p.tok.describe())
			}
			t, err := p.test()
			if err != nil {
				return err
			}
			n.tests = append(n.tests, t)
			if p.punct(")") {
				break
			}
			if !p.punct(",") {
				return p.errf(p.tok.pos, "expected ',' or ')' in the test list but found %s", p.tok.describe())
			}
		}
		p.depth--
		return p.advance()
	}
	return nil
}

func (p *parser) test() (*node, *CompileError) {
	if err := p.nest(p.tok.pos); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	n := &node{pos: p.tok.pos, name: strings.ToLower(p.tok.text)}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return n, p.arguments(n)
}
