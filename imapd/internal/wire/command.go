package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Command is one parsed command. Name says which argument fields are set.
type Command struct {
	Tag  string
	Name string // upper case, without the UID prefix: FETCH for UID FETCH
	UID  bool   // UID FETCH, UID STORE, UID COPY, UID MOVE, UID SEARCH, UID EXPUNGE, UID SORT, UID THREAD

	// Mailbox: SELECT, EXAMINE, CREATE, DELETE, RENAME (the old name), SUBSCRIBE,
	// UNSUBSCRIBE, STATUS, APPEND, COPY and MOVE (the destination), GETQUOTAROOT; the
	// quota root of GETQUOTA and SETQUOTA. As sent: DecodeMailbox undoes modified UTF-7.
	Mailbox string
	NewName string // RENAME

	User, Password string // LOGIN

	Mechanism       string  // AUTHENTICATE
	InitialResponse *string // AUTHENTICATE's SASL-IR (RFC 4959), base64 or "="

	Select     *SelectParams // SELECT, EXAMINE
	SpecialUse []string      // CREATE (USE (...)), RFC 6154 §3
	List       *List         // LIST, LSUB
	Status     []string      // STATUS items, upper case
	Append     *Append       // APPEND: messages come from Parser.NextAppend
	Fetch      *Fetch        // FETCH
	Store      *Store        // STORE
	Set        NumSet        // COPY, MOVE, UID EXPUNGE
	Search     *Search       // SEARCH
	Sort       *Sort         // SORT
	Thread     *Thread       // THREAD
	Caps       []string      // ENABLE, upper case
	ID         []string      // ID: field, value pairs; nil for NIL; a NIL value is ""
	Quota      []QuotaLimit  // SETQUOTA
	Compress   string        // COMPRESS mechanism, upper case
}

// SelectParams are SELECT's and EXAMINE's parameters (RFC 7162 §3.1.8, §3.2.5).
type SelectParams struct {
	CondStore bool
	QResync   *QResync
}

// QResync is SELECT's QRESYNC parameter.
type QResync struct {
	UIDValidity uint32
	ModSeq      uint64
	KnownUIDs   *NumSet
	// SeqMatch is the optional (known-sequence-set known-uid-set).
	SeqMatchSeqs, SeqMatchUIDs *NumSet
}

// List is LIST with LIST-EXTENDED's selection and return options (RFC 5258, RFC 5819,
// RFC 6154), and LSUB.
type List struct {
	Ref      string
	Patterns []string
	Select   []string // upper case: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE
	Return   []string // upper case: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS, MYRIGHTS
	// ReturnStatus are the items of RETURN (STATUS (...)).
	ReturnStatus []string
	Extended     bool // the command used LIST-EXTENDED syntax
}

// Store is STORE with CONDSTORE's UNCHANGEDSINCE.
type Store struct {
	Set            NumSet
	UnchangedSince *uint64
	Op             byte // '+', '-' or 0 for replace
	Silent         bool
	Flags          []string
}

// Sort is SORT (RFC 5256) with ESORT's RETURN (RFC 5267).
type Sort struct {
	Return   []string
	Criteria []SortCriterion
	Charset  string
	Key      SearchKey
}

// SortCriterion is one sort key, upper case: ARRIVAL CC DATE FROM SIZE SUBJECT TO
// DISPLAYFROM DISPLAYTO.
type SortCriterion struct {
	Key     string
	Reverse bool
}

// Thread is THREAD (RFC 5256).
type Thread struct {
	Algorithm string // upper case: REFERENCES, ORDEREDSUBJECT
	Charset   string
	Key       SearchKey
}

// QuotaLimit is one resource of SETQUOTA (RFC 9208 §4.1.4).
type QuotaLimit struct {
	Resource string
	Limit    uint64
}

// Append is APPEND's mailbox; the messages (one, or more with MULTIAPPEND) are read one
// by one with Parser.NextAppend.
type Append struct {
	Mailbox string
	started bool
	done    bool   // NextAppend returned the end or an error
	refuse  *Error // RefuseAppend
	// catParts counts the parts of the CATENATE message being read (RFC 4469); -1 when
	// none is.
	catParts int
	catSize  int64 // bytes of its TEXT parts so far
}

// AppendMessage is one message of APPEND. Body streams from the connection: read it to
// its end (or call NextAppend, which discards the rest) before the next command.
type AppendMessage struct {
	Flags  []string
	Date   time.Time // zero when not given
	Size   int64
	Binary bool // literal8 (RFC 3516 §4.4)
	Body   io.Reader
	// Catenate says the message is made of parts (RFC 4469), read with
	// Parser.NextCatenatePart; Size and Body are then unset.
	Catenate bool
}

// CatenatePart is one part of a CATENATE message (RFC 4469 §5): the IMAP URL of a
// message or section to copy, or TEXT, streaming from the connection like an APPEND
// message (read it to its end, or call NextCatenatePart, which discards the rest).
type CatenatePart struct {
	URL    string
	Size   int64
	Binary bool // a literal8
	Text   io.Reader
}

// ReadCommand reads the next command. A *Error is a command refused as malformed or too
// big: answer it with cmd.Tag (or "*" when empty) and call ReadCommand again, unless it
// is Fatal. Any other error is the connection's (errors.Is(err, ErrIO)).
func (p *Parser) ReadCommand() (*Command, error) {
	if err := p.drainAppend(); err != nil {
		var e *Error
		if errors.As(err, &e) && !e.Fatal {
			// The line after the message ended that APPEND: refused, it is skipped.
			if p.cmd != nil && p.cmd.Append != nil {
				p.cmd.Append.done = true
			}
			err = p.skipRest()
			if err == nil {
				err = e
			}
		}
		return &Command{}, err
	}
	if err := p.finishAppend(); err != nil {
		return &Command{}, err
	}
	for {
		err := p.readLine()
		p.strings, p.depth, p.cmd = 0, 0, nil
		if err != nil {
			// An over-long line is answered with its tag when it starts with one.
			cmd := &Command{}
			if i := bytes.IndexByte(p.line, ' '); i > 0 && !errors.Is(err, ErrIO) {
				if tag := p.line[:i]; bytes.IndexFunc(tag, func(r rune) bool { return r > 0x7f || !isTagChar(byte(r)) }) < 0 {
					cmd.Tag = string(tag)
				}
			}
			var e *Error
			if errors.As(err, &e) && !e.Fatal {
				// The over-long line may announce a literal: skip it too.
				if serr := p.skipRest(); serr != nil {
					return cmd, serr
				}
			}
			p.line, p.pos = p.line[:0], 0
			return cmd, err
		}
		if len(p.line) > 0 {
			break // empty lines between commands are ignored, as Dovecot does
		}
	}
	cmd := &Command{}
	p.cmd = cmd
	err := p.command(cmd)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && !e.Fatal {
			if serr := p.skipRest(); serr != nil {
				return cmd, serr
			}
		}
		return cmd, err
	}
	return cmd, nil
}

// tag = 1*<any ASTRING-CHAR except "+">
func isTagChar(c byte) bool { return isAstringChar(c) && c != '+' }

func (p *Parser) command(cmd *Command) error {
	cmd.Tag = p.span(isTagChar)
	if cmd.Tag == "" {
		return bad("missing tag")
	}
	if err := p.sp(); err != nil {
		tag := cmd.Tag
		cmd.Tag = "" // a line of one word: there is no command to answer with it
		return bad("missing command after %q", trunc([]byte(tag)))
	}
	name, err := p.atom()
	if err != nil {
		return bad("missing command name")
	}
	cmd.Name = strings.ToUpper(name)
	if cmd.Name == "UID" {
		if err := p.sp(); err != nil {
			return err
		}
		if name, err = p.atom(); err != nil {
			return err
		}
		cmd.UID = true
		cmd.Name = strings.ToUpper(name)
		switch cmd.Name {
		case "FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD":
		default:
			return bad("unknown command UID %s", trunc([]byte(name)))
		}
	}
	parse, ok := commands[cmd.Name]
	if !ok {
		return bad("unknown command %s", trunc([]byte(name)))
	}
	return parse(p, cmd)
}

var commands map[string]func(*Parser, *Command) error

func init() {
	noArgs := func(p *Parser, _ *Command) error { return p.end() }
	mailbox := func(p *Parser, c *Command) (err error) {
		if err = p.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = p.astring(); err != nil {
			return err
		}
		return p.end()
	}
	commands = map[string]func(*Parser, *Command) error{
		"CAPABILITY": noArgs, "NOOP": noArgs, "LOGOUT": noArgs, "STARTTLS": noArgs,
		"CHECK": noArgs, "CLOSE": noArgs, "UNSELECT": noArgs, "IDLE": noArgs,
		"NAMESPACE": noArgs, "UNAUTHENTICATE": noArgs,
		"DELETE": mailbox, "SUBSCRIBE": mailbox, "UNSUBSCRIBE": mailbox,
		"GETQUOTA": mailbox, "GETQUOTAROOT": mailbox,
		"LOGIN":        parseLogin,
		"AUTHENTICATE": parseAuthenticate,
		"ENABLE":       parseEnable,
		"SELECT":       parseSelect,
		"EXAMINE":      parseSelect,
		"CREATE":       parseCreate,
		"RENAME":       parseRename,
		"LIST":         parseList,
		"LSUB":         parseList,
		"STATUS":       parseStatus,
		"APPEND":       parseAppend,
		"EXPUNGE":      parseExpunge,
		"SEARCH":       parseSearch,
		"FETCH":        parseFetch,
		"STORE":        parseStore,
		"COPY":         parseCopy,
		"MOVE":         parseCopy,
		"SORT":         parseSort,
		"THREAD":       parseThread,
		"ID":           parseID,
		"SETQUOTA":     parseSetQuota,
		"COMPRESS":     parseCompress,
	}
}

func parseLogin(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.User, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if c.Password, err = p.astring(); err != nil {
		return err
	}
	return p.end()
}

func parseAuthenticate(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mechanism, err = p.atom(); err != nil {
		return err
	}
	c.Mechanism = strings.ToUpper(c.Mechanism)
	if p.maybeSP() {
		ir := p.span(func(b byte) bool {
			return b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '='
		})
		if ir == "" {
			return p.expected("initial response")
		}
		c.InitialResponse = &ir
	}
	return p.end()
}

func parseEnable(p *Parser, c *Command) error {
	for n := 0; !p.eol(); n++ {
		if n >= p.lim.MaxItems {
			return &Error{Kind: Bad, Code: "LIMIT", Text: "too many capabilities"}
		}
		if err := p.sp(); err != nil {
			return err
		}
		a, err := p.atom()
		if err != nil {
			return err
		}
		c.Caps = append(c.Caps, strings.ToUpper(a))
	}
	if len(c.Caps) == 0 {
		return bad("ENABLE needs a capability")
	}
	return nil
}

func parseSelect(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	c.Select = &SelectParams{}
	if p.maybeSP() {
		err = p.list(false, func() error {
			name, err := p.atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(name) {
			case "CONDSTORE":
				c.Select.CondStore = true
				return nil
			case "QRESYNC":
				if err := p.sp(); err != nil {
					return err
				}
				q := &QResync{}
				c.Select.QResync = q
				return p.qresync(q)
			}
			return bad("unknown SELECT parameter %q", name)
		})
		if err != nil {
			return err
		}
	}
	return p.end()
}

// qresync reads "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")".
func (p *Parser) qresync(q *QResync) (err error) {
	if err := p.expect('('); err != nil {
		return err
	}
	if q.UIDValidity, err = p.nzNumber(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	if q.ModSeq, err = p.number64(); err != nil {
		return err
	}
	if p.maybeSP() && p.peek() != '(' {
		set, err := p.numSet()
		if err != nil {
			return err
		}
		if set.SearchRes {
			return bad("$ is not a known-uids set")
		}
		q.KnownUIDs = &set
		p.maybeSP()
	}
	if p.peek() == '(' {
		p.pos++
		seqs, err := p.numSet()
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		uids, err := p.numSet()
		if err != nil {
			return err
		}
		if err := p.expect(')'); err != nil {
			return err
		}
		q.SeqMatchSeqs, q.SeqMatchUIDs = &seqs, &uids
	}
	return p.expect(')')
}

func parseCreate(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	if p.maybeSP() { // create-param: USE (special-use ...) (RFC 6154 §3)
		err = p.list(false, func() error {
			name, err := p.atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(name, "USE") {
				return bad("unknown CREATE parameter %q", name)
			}
			if err := p.sp(); err != nil {
				return err
			}
			return p.list(false, func() error {
				f, err := p.flag()
				c.SpecialUse = append(c.SpecialUse, f)
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	return p.end()
}

func parseRename(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if c.NewName, err = p.astring(); err != nil {
		return err
	}
	return p.end()
}

func (p *Parser) upperAtoms() ([]string, error) {
	var out []string
	err := p.list(true, func() error {
		a, err := p.atom()
		out = append(out, strings.ToUpper(a))
		return err
	})
	return out, err
}

func parseList(p *Parser, c *Command) (err error) {
	l := &List{}
	c.List = l
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		if c.Name == "LSUB" {
			return bad("LSUB has no selection options")
		}
		l.Extended = true
		if l.Select, err = p.upperAtoms(); err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
	}
	if l.Ref, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' && c.Name == "LIST" {
		l.Extended = true
		err = p.list(false, func() error {
			pat, err := p.listMailbox()
			l.Patterns = append(l.Patterns, pat)
			return err
		})
	} else {
		var pat string
		pat, err = p.listMailbox()
		l.Patterns = []string{pat}
	}
	if err != nil {
		return err
	}
	if c.Name == "LIST" && p.maybeSP() {
		if !p.peekAtom("RETURN") {
			return p.expected("RETURN")
		}
		p.pos += len("RETURN")
		l.Extended = true
		if err := p.sp(); err != nil {
			return err
		}
		err = p.list(true, func() error {
			a, err := p.atom()
			if err != nil {
				return err
			}
			a = strings.ToUpper(a)
			l.Return = append(l.Return, a)
			if a == "STATUS" {
				if err := p.sp(); err != nil {
					return err
				}
				l.ReturnStatus, err = p.statusItems()
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return p.end()
}

func (p *Parser) statusItems() ([]string, error) {
	items, err := p.upperAtoms()
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		switch it {
		case "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
			"HIGHESTMODSEQ", "APPENDLIMIT":
		default:
			return nil, bad("unknown STATUS item %q", it)
		}
	}
	if len(items) == 0 {
		return nil, bad("STATUS needs an item")
	}
	return items, nil
}

func parseStatus(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if c.Status, err = p.statusItems(); err != nil {
		return err
	}
	return p.end()
}

func parseAppend(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	c.Append = &Append{Mailbox: c.Mailbox, catParts: -1}
	if p.eol() {
		return bad("APPEND needs a message")
	}
	return nil // the messages are read by NextAppend
}

// NextAppend returns the next message of the current APPEND command, or nil after the
// last. A *Error refuses the rest of the command (the session answers it with the tag);
// a message larger than Limits.MaxMessage is NO [TOOBIG], refused before the client sends
// it when its literal is synchronising (RFC 7889 §3).
func (p *Parser) NextAppend() (*AppendMessage, error) {
	cmd := p.cmd
	if cmd == nil || cmd.Append == nil {
		return nil, errors.New("wire: NextAppend outside APPEND")
	}
	if err := p.drainAppend(); err != nil {
		return nil, err
	}
	m, err := p.appendMessage(cmd.Append)
	if m == nil {
		cmd.Append.done = true
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) && !e.Fatal {
			if serr := p.skipRest(); serr != nil {
				return nil, serr
			}
		}
		return nil, err
	}
	return m, nil
}

// NextCatenatePart returns the next part of the CATENATE message NextAppend returned,
// or nil after the last (NextAppend then goes on with the next message). A *Error
// refuses the rest of the command, as NextAppend's; a message whose TEXT parts are
// larger than Limits.MaxMessage is NO [TOOBIG].
func (p *Parser) NextCatenatePart() (*CatenatePart, error) {
	cmd := p.cmd
	if cmd == nil || cmd.Append == nil || cmd.Append.catParts < 0 {
		return nil, errors.New("wire: NextCatenatePart outside CATENATE")
	}
	if err := p.drainAppend(); err != nil {
		return nil, err
	}
	part, err := p.catenatePart(cmd.Append)
	if err != nil {
		cmd.Append.done = true
		var e *Error
		if errors.As(err, &e) && !e.Fatal {
			if serr := p.skipRest(); serr != nil {
				return nil, serr
			}
		}
		return nil, err
	}
	return part, nil
}

func (p *Parser) catenatePart(a *Append) (*CatenatePart, error) {
	if p.peek() == ')' {
		if a.catParts == 0 {
			return nil, bad("CATENATE needs a part")
		}
		p.pos++
		a.catParts = -1
		return nil, nil
	}
	if a.catParts > 0 {
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	a.catParts++
	if a.catParts > p.lim.MaxItems {
		return nil, bad("too many CATENATE parts")
	}
	switch {
	case p.peekAtom("URL"):
		p.pos += len("URL")
		if err := p.sp(); err != nil {
			return nil, err
		}
		u, err := p.astring()
		if err != nil {
			return nil, err
		}
		if a.refuse != nil {
			return nil, a.refuse
		}
		return &CatenatePart{URL: u}, nil
	case p.peekAtom("TEXT"):
		p.pos += len("TEXT")
		if err := p.sp(); err != nil {
			return nil, err
		}
		part := &CatenatePart{}
		var err error
		if part.Binary, part.Size, part.Text, err = p.messageLiteral(a, a.catSize); err != nil {
			return nil, err
		}
		a.catSize += part.Size
		return part, nil
	}
	return nil, bad("a CATENATE part is TEXT or URL")
}

// AbortAppend ends the current APPEND, which the session refuses: what is left of it is
// skipped, following non-synchronising literals; a synchronising literal gets no
// continuation request, so the client does not send it.
func (p *Parser) AbortAppend() error {
	cmd := p.cmd
	if cmd == nil || cmd.Append == nil {
		return errors.New("wire: AbortAppend outside APPEND")
	}
	if err := p.drainAppend(); err != nil {
		return err
	}
	cmd.Append.done = true
	return p.skipRest()
}

// RefuseAppend refuses the current APPEND with e before its message is sent: a
// synchronising literal gets no continuation request, a non-synchronising one is skipped
// (RFC 9051 §6.3.12: the server may refuse before the literal, e.g. for a bad mailbox
// name). The session answers e with the tag.
func (p *Parser) RefuseAppend(e *Error) error {
	cmd := p.cmd
	if cmd == nil || cmd.Append == nil {
		return errors.New("wire: RefuseAppend outside APPEND")
	}
	cmd.Append.refuse = e
	_, err := p.NextAppend()
	if err == nil {
		return e
	}
	return err
}

func (p *Parser) appendMessage(a *Append) (*AppendMessage, error) {
	if p.eol() {
		if !a.started {
			return nil, bad("APPEND needs a message")
		}
		return nil, nil
	}
	a.started = true
	if err := p.sp(); err != nil {
		return nil, err
	}
	m := &AppendMessage{}
	var err error
	if p.peek() == '(' {
		if m.Flags, err = p.flagList(); err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	if p.peek() == '"' {
		if m.Date, err = p.dateTime(); err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	if p.peekAtom("CATENATE") {
		if a.refuse != nil {
			return nil, a.refuse // NextAppend skips the rest, sending no continuation
		}
		p.pos += len("CATENATE")
		if err := p.sp(); err != nil {
			return nil, err
		}
		if err := p.expect('('); err != nil {
			return nil, err
		}
		m.Catenate = true
		a.catParts, a.catSize = 0, 0
		return m, nil
	}
	if m.Binary, m.Size, m.Body, err = p.messageLiteral(a, 0); err != nil {
		return nil, err
	}
	return m, nil
}

// messageLiteral reads the literal (or literal8) of an APPEND message or of a CATENATE
// TEXT part, which follows sofar octets of the same message: NO [TOOBIG] beyond
// Limits.MaxMessage (MaxStringLiteral before login), the session's refusal if it made
// one; else the continuation request of a synchronising literal is sent and body
// streams the octets from the connection.
func (p *Parser) messageLiteral(a *Append, sofar int64) (binary bool, n int64, body io.Reader, err error) {
	if p.peek() == '~' {
		binary = true
		p.pos++
	}
	n, sync, err := p.literalHeader()
	if err != nil {
		return false, 0, nil, err
	}
	if a.refuse != nil {
		return false, 0, nil, p.refuseLiteral(n, sync, a.refuse)
	}
	max := p.lim.MaxMessage
	if !p.authed {
		max = p.lim.MaxStringLiteral
	}
	if sofar+n > max {
		more := ""
		if sofar > 0 {
			more = "more than "
		}
		return false, 0, nil, p.refuseLiteral(n, sync, &Error{Kind: No, Code: "TOOBIG", Text: fmt.Sprintf("message of %s%d octets too big (at most %d)", more, sofar+n, max)})
	}
	if sync {
		if err := p.cont("Ready for literal data"); err != nil {
			return false, 0, nil, fmt.Errorf("%w: %w", ErrIO, err)
		}
	}
	p.pending = &io.LimitedReader{R: p.r, N: n}
	return binary, n, p.pending, nil
}

// finishAppend skips what is left of an APPEND the session did not read to its end (one
// it refused for the state, before login, without RefuseAppend): the messages of its
// non-synchronising literals are data and must never be read as commands.
func (p *Parser) finishAppend() error {
	if p.cmd == nil || p.cmd.Append == nil || p.cmd.Append.done {
		return nil
	}
	p.cmd.Append.done = true
	return p.skipRest()
}

// drainAppend discards the unread rest of a message handed out by NextAppend and reads
// the line that follows it.
func (p *Parser) drainAppend() error {
	if p.pending == nil {
		return nil
	}
	lr := p.pending
	p.pending = nil
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return fmt.Errorf("%w: %w", ErrIO, err)
	}
	if lr.N > 0 {
		return fmt.Errorf("%w: %w", ErrIO, io.ErrUnexpectedEOF)
	}
	return p.readLine()
}

func parseExpunge(p *Parser, c *Command) (err error) {
	if c.UID {
		if err = p.sp(); err != nil {
			return err
		}
		if c.Set, err = p.numSet(); err != nil {
			return err
		}
	}
	return p.end()
}

// searchReturn reads [RETURN (opts) SP]; the options are upper case.
func (p *Parser) searchReturn() ([]string, error) {
	if !p.peekAtom("RETURN") {
		return nil, nil
	}
	p.pos += len("RETURN")
	if err := p.sp(); err != nil {
		return nil, err
	}
	opts, err := p.upperAtoms()
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		switch o {
		case "MIN", "MAX", "ALL", "COUNT", "SAVE":
		default:
			return nil, bad("unknown RETURN option %q", o)
		}
	}
	if opts == nil {
		opts = []string{} // RETURN () means ALL (RFC 4731 §3.1)
	}
	return opts, p.sp()
}

func parseSearch(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	s := &Search{}
	c.Search = s
	if s.Return, err = p.searchReturn(); err != nil {
		return err
	}
	s.Charset, s.Key, err = p.searchProgram()
	return err
}

func parseFetch(p *Parser, c *Command) error {
	if err := p.sp(); err != nil {
		return err
	}
	c.Fetch = &Fetch{}
	if err := p.fetchArgs(c.Fetch); err != nil {
		return err
	}
	if c.Fetch.Vanished && !c.UID {
		return bad("VANISHED is for UID FETCH") // RFC 7162 §3.2.6
	}
	return nil
}

func parseStore(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	s := &Store{}
	c.Store = s
	if s.Set, err = p.numSet(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' { // store-modifiers (RFC 7162 §3.1.3)
		err = p.list(false, func() error {
			name, err := p.atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(name, "UNCHANGEDSINCE") {
				return bad("unknown STORE modifier %q", name)
			}
			if err := p.sp(); err != nil {
				return err
			}
			n, err := p.number64()
			s.UnchangedSince = &n
			return err
		})
		if err != nil {
			return err
		}
		if err = p.sp(); err != nil {
			return err
		}
	}
	if c := p.peek(); c == '+' || c == '-' {
		s.Op = c
		p.pos++
	}
	item := strings.ToUpper(p.span(isFetchNameChar))
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		s.Silent = true
	default:
		return bad("STORE wants FLAGS or FLAGS.SILENT, not %q", item)
	}
	if err = p.sp(); err != nil {
		return err
	}
	if p.peek() == '(' {
		if s.Flags, err = p.flagList(); err != nil {
			return err
		}
	} else {
		for {
			if len(s.Flags) >= p.lim.MaxItems {
				return &Error{Kind: Bad, Code: "LIMIT", Text: "too many flags"}
			}
			f, err := p.flag()
			if err != nil {
				return err
			}
			s.Flags = append(s.Flags, f)
			if !p.maybeSP() {
				break
			}
		}
	}
	return p.end()
}

func parseCopy(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Set, err = p.numSet(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	return p.end()
}

func parseSort(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	s := &Sort{}
	c.Sort = s
	if s.Return, err = p.searchReturn(); err != nil {
		return err
	}
	err = p.list(false, func() error {
		a, err := p.atom()
		if err != nil {
			return err
		}
		crit := SortCriterion{Key: strings.ToUpper(a)}
		if crit.Key == "REVERSE" {
			crit.Reverse = true
			if err := p.sp(); err != nil {
				return err
			}
			if a, err = p.atom(); err != nil {
				return err
			}
			crit.Key = strings.ToUpper(a)
		}
		switch crit.Key {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
		default:
			return bad("unknown sort key %q", a)
		}
		s.Criteria = append(s.Criteria, crit)
		return nil
	})
	if err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	if s.Charset, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	_, s.Key, err = p.searchProgram()
	return err
}

func parseThread(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	t := &Thread{}
	c.Thread = t
	a, err := p.atom()
	if err != nil {
		return err
	}
	t.Algorithm = strings.ToUpper(a)
	if err = p.sp(); err != nil {
		return err
	}
	if t.Charset, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	_, t.Key, err = p.searchProgram()
	return err
}

// parseID reads ID's parameter list: at most 30 pairs, fields of at most 30 octets and
// values of at most 1024 (RFC 2971 §3.3).
func parseID(p *Parser, c *Command) error {
	if err := p.sp(); err != nil {
		return err
	}
	if p.peekAtom("NIL") {
		p.pos += 3
		return p.end()
	}
	c.ID = []string{}
	err := p.list(true, func() error {
		if len(c.ID) >= 60 {
			return bad("ID has at most 30 fields")
		}
		field, err := p.str()
		if err != nil {
			return err
		}
		if len(field) > 30 {
			return bad("ID field name longer than 30 octets")
		}
		if err := p.sp(); err != nil {
			return err
		}
		value, _, err := p.nstring()
		if err != nil {
			return err
		}
		if len(value) > 1024 {
			return bad("ID value longer than 1024 octets")
		}
		c.ID = append(c.ID, field, value)
		return nil
	})
	if err != nil {
		return err
	}
	return p.end()
}

func parseSetQuota(p *Parser, c *Command) (err error) {
	if err = p.sp(); err != nil {
		return err
	}
	if c.Mailbox, err = p.astring(); err != nil {
		return err
	}
	if err = p.sp(); err != nil {
		return err
	}
	err = p.list(true, func() error {
		a, err := p.atom()
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		n, err := p.number64()
		c.Quota = append(c.Quota, QuotaLimit{Resource: strings.ToUpper(a), Limit: n})
		return err
	})
	if err != nil {
		return err
	}
	return p.end()
}

func parseCompress(p *Parser, c *Command) error {
	if err := p.sp(); err != nil {
		return err
	}
	a, err := p.atom()
	if err != nil {
		return err
	}
	c.Compress = strings.ToUpper(a)
	return p.end()
}
