package wire

import (
	"strings"
	"time"
)

// SearchKey is one search-key (RFC 9051 §6.4.4, RFC 3501 §6.4.4), with those of
// CONDSTORE (MODSEQ), WITHIN (OLDER, YOUNGER) and SEARCHRES ($). A parenthesised list is
// an AND of its Keys.
type SearchKey struct {
	// Op is the key's name in upper case: ALL, ANSWERED, BCC, BEFORE, BODY, CC, DELETED,
	// DRAFT, FLAGGED, FROM, HEADER, KEYWORD, LARGER, NEW, NOT, OLD, OLDER, ON, OR, RECENT,
	// SEEN, SENTBEFORE, SENTON, SENTSINCE, SINCE, SMALLER, SUBJECT, TEXT, TO, UID,
	// UNANSWERED, UNDELETED, UNDRAFT, UNFLAGGED, UNKEYWORD, UNSEEN, YOUNGER, MODSEQ, and
	// "AND" for a parenthesised list, "SEQSET" for a bare sequence set.
	Op    string
	Keys  []SearchKey // AND: the list; NOT: one; OR: two
	Str   string      // BCC, BODY, CC, FROM, SUBJECT, TEXT, TO, KEYWORD, UNKEYWORD; HEADER's field name
	Value string      // HEADER's value
	Num   uint64      // LARGER, SMALLER, OLDER, YOUNGER (seconds), MODSEQ
	Date  time.Time   // BEFORE, ON, SINCE, SENTBEFORE, SENTON, SENTSINCE
	Set   NumSet      // SEQSET, UID
}

// Search is SEARCH, UID SEARCH (with ESEARCH's RETURN, RFC 4731 and RFC 9051 §6.4.4).
type Search struct {
	Return  []string // MIN MAX ALL COUNT SAVE, upper case; nil without RETURN
	Charset string
	Key     SearchKey // an AND of the top-level keys
}

// searchProgram reads [CHARSET SP astring SP] search-key *(SP search-key) up to the end
// of the line.
func (p *Parser) searchProgram() (charset string, key SearchKey, err error) {
	if p.peekAtom("CHARSET") {
		p.pos += len("CHARSET")
		if err := p.sp(); err != nil {
			return "", key, err
		}
		if charset, err = p.astring(); err != nil {
			return "", key, err
		}
		if err := p.sp(); err != nil {
			return "", key, err
		}
	}
	key.Op = "AND"
	for {
		if len(key.Keys) >= p.lim.MaxItems {
			return "", key, &Error{Kind: Bad, Code: "LIMIT", Text: "too many search keys"}
		}
		k, err := p.searchKey()
		if err != nil {
			return "", key, err
		}
		key.Keys = append(key.Keys, k)
		if p.eol() {
			return charset, key, nil
		}
		if err := p.sp(); err != nil {
			return "", key, err
		}
	}
}

// searchKey reads one key, nesting (lists, NOT, OR) bounded by MaxDepth.
func (p *Parser) searchKey() (SearchKey, error) {
	if err := p.enter(); err != nil {
		return SearchKey{}, err
	}
	defer p.leave()
	switch c := p.peek(); {
	case c == '(':
		p.pos++
		k := SearchKey{Op: "AND"}
		for {
			if len(k.Keys) >= p.lim.MaxItems {
				return k, &Error{Kind: Bad, Code: "LIMIT", Text: "too many search keys"}
			}
			sub, err := p.searchKey()
			if err != nil {
				return k, err
			}
			k.Keys = append(k.Keys, sub)
			if p.peek() == ')' {
				p.pos++
				return k, nil
			}
			if err := p.sp(); err != nil {
				return k, p.expected(`SP or ")"`)
			}
		}
	case c == '$' || c == '*' || c >= '1' && c <= '9':
		set, err := p.numSet()
		return SearchKey{Op: "SEQSET", Set: set}, err
	}
	name, err := p.atom()
	if err != nil {
		return SearchKey{}, p.expected("search key")
	}
	k := SearchKey{Op: strings.ToUpper(name)}
	arg := func(read func() error) (SearchKey, error) {
		if err := p.sp(); err != nil {
			return k, err
		}
		return k, read()
	}
	switch k.Op {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return k, nil
	case "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO":
		return arg(func() (err error) { k.Str, err = p.astring(); return })
	case "KEYWORD", "UNKEYWORD":
		return arg(func() (err error) { k.Str, err = p.flag(); return })
	case "HEADER":
		return arg(func() (err error) {
			if k.Str, err = p.astring(); err != nil {
				return err
			}
			if err = p.sp(); err != nil {
				return err
			}
			k.Value, err = p.astring()
			return err
		})
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		return arg(func() (err error) { k.Date, err = p.date(); return })
	case "LARGER", "SMALLER":
		return arg(func() (err error) { k.Num, err = p.number64(); return })
	case "OLDER", "YOUNGER": // RFC 5032: nz-number of seconds
		return arg(func() error {
			n, err := p.nzNumber()
			k.Num = uint64(n)
			return err
		})
	case "UID":
		return arg(func() (err error) { k.Set, err = p.numSet(); return })
	case "NOT":
		return arg(func() error {
			sub, err := p.searchKey()
			k.Keys = []SearchKey{sub}
			return err
		})
	case "OR":
		return arg(func() error {
			a, err := p.searchKey()
			if err != nil {
				return err
			}
			if err := p.sp(); err != nil {
				return err
			}
			b, err := p.searchKey()
			k.Keys = []SearchKey{a, b}
			return err
		})
	case "MODSEQ": // RFC 7162 §3.1.5: [entry-name SP entry-type-req SP] mod-sequence-valzer
		return arg(func() error {
			if p.peek() == '"' {
				if _, err := p.quoted(); err != nil {
					return err
				}
				if err := p.sp(); err != nil {
					return err
				}
				t, err := p.atom()
				if err != nil {
					return err
				}
				switch strings.ToLower(t) {
				case "priv", "shared", "all":
				default:
					return bad("MODSEQ entry type %q", t)
				}
				if err := p.sp(); err != nil {
					return err
				}
			}
			var err error
			k.Num, err = p.number64()
			return err
		})
	}
	return k, bad("unknown search key %q", name)
}
