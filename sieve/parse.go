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
	pos       srcPos
	multiline bool
}

type argument struct {
	kind argKind
	pos  srcPos
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
	pos   srcPos
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
	depth    int // nesting of blocks
	tdepth   int // nesting of tests
	errs     ErrorList
	fatal    bool // the lexer cannot go on (an unterminated string or comment)
}

// maxErrors ends parsing: a script this broken needs no more than this many errors.
const maxErrors = 50

// maxArguments bounds the arguments of one command or test (Pigeonhole's
// SIEVE_MAX_COMMAND_ARGUMENTS).
const maxArguments = 32

func (p *parser) advance() *CompileError {
	if len(p.errs) >= maxErrors {
		p.fatal = true
		p.tok = token{kind: tEOF, pos: p.tok.pos}
		return nil
	}
	t, err := p.lex.next()
	if err != nil {
		p.fatal = true
		p.tok = token{kind: tEOF, pos: err.pos()}
		return err
	}
	p.tok = t
	return nil
}

func (e *CompileError) pos() srcPos { return srcPos{e.Line, e.Col} }

func (p *parser) errf(pos srcPos, format string, args ...any) *CompileError {
	return &CompileError{Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) punct(s string) bool { return p.tok.kind == tPunct && p.tok.text == s }

// parse reads a script. After a syntax error it skips to the end of the command (its
// ';' or its block) and goes on, so one pass reports every error, as Pigeonhole does.
func parse(src []byte, maxDepth, maxString int) ([]*node, ErrorList) {
	p := &parser{lex: lexer{src: src, line: 1, col: 1, maxString: maxString}, maxDepth: maxDepth}
	p.lex.errs = &p.errs
	if err := p.advance(); err != nil {
		return nil, append(p.errs, err)
	}
	var cmds []*node
	for !p.fatal {
		cmds = append(cmds, p.commands()...)
		if p.tok.kind == tEOF || p.fatal {
			break
		}
		// A stray '}' or token at top level.
		p.errs = append(p.errs, p.errf(p.tok.pos, "unexpected %s", p.tok.describe()))
		if err := p.advance(); err != nil {
			p.errs = append(p.errs, err)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return cmds, nil
}

// commands reads commands up to a '}' or the end, recovering from errors.
func (p *parser) commands() []*node {
	var cmds []*node
	for !p.fatal {
		if p.tok.kind != tIdent {
			if p.tok.kind == tEOF || p.punct("}") {
				return cmds
			}
			p.errs = append(p.errs, p.errf(p.tok.pos, "expected a command but found %s", p.tok.describe()))
			p.skipStatement()
			continue
		}
		depth, tdepth := p.depth, p.tdepth
		c, err := p.command()
		if err != nil {
			p.errs = append(p.errs, err)
			p.depth, p.tdepth = depth, tdepth
			if !p.fatal {
				p.skipStatement()
			}
			continue
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// skipStatement passes the rest of a broken command: up to its ';', or over its
// block, or up to the '}' that ends the enclosing block.
func (p *parser) skipStatement() {
	for !p.fatal {
		switch {
		case p.tok.kind == tEOF, p.punct("}"):
			return
		case p.punct(";"):
			p.recordAdvance()
			return
		case p.punct("{"):
			depth := 0
			for !p.fatal && p.tok.kind != tEOF {
				if p.punct("{") {
					depth++
				} else if p.punct("}") {
					depth--
					if depth == 0 {
						p.recordAdvance()
						return
					}
				}
				p.recordAdvance()
			}
			return
		}
		p.recordAdvance()
	}
}

func (p *parser) recordAdvance() {
	if err := p.advance(); err != nil {
		p.errs = append(p.errs, err)
	}
}

func (p *parser) nest(pos srcPos) *CompileError {
	p.depth++
	if p.maxDepth > 0 && p.depth > p.maxDepth {
		return p.errf(pos, "block nesting exceeds the limit of %d levels", p.maxDepth)
	}
	return nil
}

func (p *parser) nestTest(pos srcPos) *CompileError {
	p.tdepth++
	if p.maxDepth > 0 && p.tdepth > p.maxDepth {
		return p.errf(pos, "test nesting exceeds the limit of %d levels", p.maxDepth)
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
		n.block = p.commands()
		if p.fatal {
			return n, nil
		}
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
		if len(n.args) > maxArguments {
			return p.errf(a.pos, "too many arguments for '%s' (the limit is %d)", n.name, maxArguments)
		}
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
		if err := p.nestTest(p.tok.pos); err != nil {
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
		p.tdepth--
		return p.advance()
	}
	return nil
}

func (p *parser) test() (*node, *CompileError) {
	if err := p.nestTest(p.tok.pos); err != nil {
		return nil, err
	}
	defer func() { p.tdepth-- }()
	n := &node{pos: p.tok.pos, name: strings.ToLower(p.tok.text)}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return n, p.arguments(n)
}
