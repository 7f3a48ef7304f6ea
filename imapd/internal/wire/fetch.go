package wire

import (
	"strings"
)

// Partial is <offset.count> of a BODY[] or BINARY[] item (RFC 9051 §6.4.5).
type Partial struct {
	Offset, Count uint32
}

// Section is what BODY[...] and BINARY[...] name.
type Section struct {
	Part []int // 1.2.3
	// Specifier is "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME.
	Specifier string
	Fields    []string // HEADER.FIELDS (...)
}

// FetchAtt is one fetch attribute. The macros ALL, FAST and FULL are expanded, and
// RFC822, RFC822.HEADER and RFC822.TEXT are left as they are (their responses carry
// their own names).
type FetchAtt struct {
	// Name is ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER, RFC822.SIZE,
	// RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ, or for sections BODY[], BODY.PEEK[],
	// BINARY[], BINARY.PEEK[], BINARY.SIZE[] (with the brackets, nothing between them).
	Name    string
	Section *Section
	Partial *Partial
}

// Fetch is FETCH and UID FETCH with CONDSTORE's CHANGEDSINCE and QRESYNC's VANISHED.
type Fetch struct {
	Set          NumSet
	Atts         []FetchAtt
	ChangedSince uint64 // 0: not given
	Vanished     bool
}

var fetchMacros = map[string][]string{
	"ALL":  {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"},
	"FAST": {"FLAGS", "INTERNALDATE", "RFC822.SIZE"},
	"FULL": {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"},
}

func (p *Parser) fetchArgs(f *Fetch) error {
	var err error
	if f.Set, err = p.numSet(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		err = p.list(false, func() error {
			a, err := p.fetchAtt()
			f.Atts = append(f.Atts, a)
			return err
		})
	} else {
		name := p.span(isFetchNameChar)
		if m, ok := fetchMacros[strings.ToUpper(name)]; ok {
			for _, n := range m {
				f.Atts = append(f.Atts, FetchAtt{Name: n})
			}
		} else {
			p.pos -= len(name)
			var a FetchAtt
			a, err = p.fetchAtt()
			f.Atts = append(f.Atts, a)
		}
	}
	if err != nil {
		return err
	}
	if p.maybeSP() { // fetch-modifiers (RFC 7162 §3.1.4.1, §3.2.6)
		err = p.list(false, func() error {
			name, err := p.atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(name) {
			case "CHANGEDSINCE":
				if err := p.sp(); err != nil {
					return err
				}
				n, err := p.number64()
				if err == nil && n == 0 {
					return bad("CHANGEDSINCE 0")
				}
				f.ChangedSince = n
				return err
			case "VANISHED":
				f.Vanished = true
				return nil
			}
			return bad("unknown FETCH modifier %q", name)
		})
		if err != nil {
			return err
		}
		if f.Vanished && f.ChangedSince == 0 {
			return bad("VANISHED needs CHANGEDSINCE") // RFC 7162 §3.2.6
		}
	}
	return p.end()
}

func isFetchNameChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.'
}

func (p *Parser) fetchAtt() (FetchAtt, error) {
	name := strings.ToUpper(p.span(isFetchNameChar))
	switch name {
	case "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
		"RFC822.TEXT", "BODYSTRUCTURE", "UID", "MODSEQ":
		return FetchAtt{Name: name}, nil
	case "BODY", "BODY.PEEK":
		if p.peek() != '[' {
			if name == "BODY.PEEK" {
				return FetchAtt{}, p.expected("[")
			}
			return FetchAtt{Name: "BODY"}, nil
		}
		sec, err := p.section()
		if err != nil {
			return FetchAtt{}, err
		}
		a := FetchAtt{Name: name + "[]", Section: sec}
		a.Partial, err = p.partial()
		return a, err
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		if err := p.expect('['); err != nil {
			return FetchAtt{}, err
		}
		sec := &Section{}
		if p.peek() != ']' {
			var err error
			if sec.Part, err = p.sectionPart(); err != nil {
				return FetchAtt{}, err
			}
		}
		if err := p.expect(']'); err != nil {
			return FetchAtt{}, err
		}
		a := FetchAtt{Name: name + "[]", Section: sec}
		if name != "BINARY.SIZE" {
			var err error
			a.Partial, err = p.partial()
			return a, err
		}
		return a, nil
	case "":
		return FetchAtt{}, p.expected("fetch attribute")
	}
	return FetchAtt{}, bad("unknown fetch attribute %q", name)
}

// sectionPart reads nz-number *("." nz-number), leaving a "." before a specifier.
func (p *Parser) sectionPart() ([]int, error) {
	var part []int
	for {
		if len(part) >= 100 {
			return nil, &Error{Kind: Bad, Code: "LIMIT", Text: "section part nested too deep"}
		}
		n, err := p.nzNumber()
		if err != nil {
			return nil, err
		}
		part = append(part, int(n))
		if p.peek() != '.' || p.pos+1 >= len(p.line) || p.line[p.pos+1] < '0' || p.line[p.pos+1] > '9' {
			return part, nil
		}
		p.pos++
	}
}

// section reads "[" [section-spec] "]".
func (p *Parser) section() (*Section, error) {
	if err := p.expect('['); err != nil {
		return nil, err
	}
	sec := &Section{}
	if c := p.peek(); c >= '0' && c <= '9' {
		var err error
		if sec.Part, err = p.sectionPart(); err != nil {
			return nil, err
		}
		if p.peek() == '.' {
			p.pos++
		} else if p.peek() != ']' {
			return nil, p.expected(`"]"`)
		}
	}
	if p.peek() != ']' {
		spec := strings.ToUpper(p.span(isFetchNameChar))
		switch spec {
		case "HEADER", "TEXT":
		case "MIME":
			if len(sec.Part) == 0 {
				return nil, bad("MIME needs a section part")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := p.sp(); err != nil {
				return nil, err
			}
			err := p.list(false, func() error {
				f, err := p.astring()
				sec.Fields = append(sec.Fields, f)
				return err
			})
			if err != nil {
				return nil, err
			}
		default:
			return nil, bad("unknown section %q", spec)
		}
		sec.Specifier = spec
	}
	if err := p.expect(']'); err != nil {
		return nil, err
	}
	return sec, nil
}

// partial reads an optional "<" number "." nz-number ">"; numbers beyond 2^32-1 are BAD.
func (p *Parser) partial() (*Partial, error) {
	if p.peek() != '<' {
		return nil, nil
	}
	p.pos++
	off, err := p.number()
	if err != nil {
		return nil, err
	}
	if err := p.expect('.'); err != nil {
		return nil, err
	}
	n, err := p.nzNumber()
	if err != nil {
		return nil, err
	}
	if err := p.expect('>'); err != nil {
		return nil, err
	}
	return &Partial{Offset: off, Count: n}, nil
}
