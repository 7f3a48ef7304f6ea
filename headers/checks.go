package headers

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/portcullis-mail/portcullis/content"
)

// Table names, as in Postfix's main.cf.
const (
	TableHeader = "header_checks"
	TableMIME   = "mime_header_checks"
	TableNested = "nested_header_checks"
	TableBody   = "body_checks"
)

// Tables are the maps applied to one message. A nil map is not applied.
type Tables struct {
	Header, MIME, Nested, Body *Map
	// BodySizeLimit is how many bytes of each body segment body_checks inspect (Postfix's
	// body_checks_size_limit, default 51200).
	BodySizeLimit int
	// LineLimit splits longer body lines, as Postfix's line_length_limit (default 2048).
	LineLimit int
}

// Finding is one table hit on one input line.
type Finding struct {
	Table  string // header_checks, mime_header_checks, nested_header_checks, body_checks
	Action string // upper case: REJECT, WARN, 550, ...
	Text   string // the rest of the result
	Hit    Hit
	Input  string // the logical header or body line that matched (at most 998 bytes)
}

// Report is what the tables found in a message, applied the way Postfix's cleanup(8)
// applies them: the first entry that matches a line is its hit; REJECT, DEFER, DISCARD,
// a 4xx/5xx reply and PASS stop the inspection; other actions are collected and
// inspection goes on.
type Report struct {
	// Findings lists the hits in message order (at most 100), DUNNO and OK included.
	Findings []Finding
	// Decisive is the hit that stopped inspection (REJECT, DEFER, DISCARD, 4xx, 5xx,
	// PASS), else the first hit whose action is not DUNNO or OK; nil when none.
	Decisive *Finding
	Reject   bool     // a REJECT or 5xx hit (or DEFER/4xx: see Defer)
	Defer    bool     // the stopping hit asks for a temporary failure (DEFER, 4xx)
	Discard  bool     // DISCARD
	Hold     bool     // some HOLD hit
	Warn     bool     // some WARN or INFO hit
	Redirect string   // the last REDIRECT target
	Filter   string   // the last FILTER transport:destination
	BCC      []string // BCC recipients
	Prepend  []string // PREPEND header lines, in order
	Errors   []string // patterns that failed (timeouts), "file:line: error"
	// Incomplete is set when the deadline ended the inspection early.
	Incomplete bool
}

const maxFindings = 100

// stopping reports whether an action ends the inspection of the message.
func stopping(action string) bool {
	switch action {
	case "REJECT", "DEFER", "DISCARD", "PASS":
		return true
	}
	return isReplyCode(action)
}

func isReplyCode(a string) bool {
	return len(a) == 3 && (a[0] == '4' || a[0] == '5') && a[1] >= '0' && a[1] <= '9' && a[2] >= '0' && a[2] <= '9'
}

// splitAction splits a result into its upper-case action word and text.
func splitAction(result string) (string, string) {
	result = strings.TrimSpace(result)
	i := strings.IndexAny(result, " \t")
	if i < 0 {
		return strings.ToUpper(result), ""
	}
	return strings.ToUpper(result[:i]), strings.TrimSpace(result[i+1:])
}

// knownActions are the header_checks(5) actions, plus DEFER and 4xx/5xx replies as in
// access(5).
var knownActions = map[string]bool{
	"REJECT": true, "DEFER": true, "DISCARD": true, "DUNNO": true, "OK": true, "PASS": true,
	"HOLD": true, "IGNORE": true, "INFO": true, "WARN": true, "PREPEND": true, "REPLACE": true,
	"STRIP": true, "REDIRECT": true, "BCC": true, "FILTER": true,
}

// ValidateActions checks that every entry's result starts with a known action; it
// returns the first offending entry as "file:line: ..." .
func (m *Map) ValidateActions() error {
	for _, r := range m.rules {
		if r.kind != ruleMatch || len(r.result) == 0 || r.result[0].group >= 0 {
			continue
		}
		a, text := splitAction(r.result[0].lit)
		if len(r.result) > 1 && !strings.ContainsAny(r.result[0].lit, " \t") {
			continue // the action word itself is substituted
		}
		if !knownActions[a] && !isReplyCode(a) {
			return &LoadError{File: m.Name, Line: r.line, Msg: "unknown action " + strconv.Quote(a)}
		}
		if (a == "REDIRECT" || a == "BCC" || a == "FILTER" || a == "PREPEND" || a == "REPLACE") && text == "" && len(r.result) == 1 {
			return &LoadError{File: m.Name, Line: r.line, Msg: a + " needs an argument"}
		}
	}
	return nil
}

// LoadError is an error in a table file, at a line.
type LoadError struct {
	File string
	Line int
	Msg  string
}

func (e *LoadError) Error() string {
	return "headers: " + e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// isMIMEHeader reports the fields Postfix hands to mime_header_checks wherever they
// appear (its header_opts HDR_OPT_MIME).
func isMIMEHeader(name string) bool {
	switch strings.ToLower(name) {
	case "content-type", "content-transfer-encoding", "content-disposition", "content-description",
		"content-id", "mime-version":
		return true
	}
	return false
}

type checker struct {
	ctx     context.Context
	t       *Tables
	rep     *Report
	scratch []byte
	stopped bool
	// failed holds the entries that timed out on this message: they are not tried
	// again, so that one pathological pattern costs one timeout, not one per line.
	failed map[*rule]bool
	lines  int
}

// Check applies the tables to a walked message.
func (t *Tables) Check(m *content.Message) *Report {
	return t.CheckContext(context.Background(), m)
}

// CheckContext is Check with a deadline: when ctx ends, inspection stops and
// Report.Incomplete is set.
func (t *Tables) CheckContext(ctx context.Context, m *content.Message) *Report {
	c := &checker{ctx: ctx, t: t, rep: &Report{}, failed: map[*rule]bool{}}
	if len(m.Parts) == 0 {
		return c.rep
	}
	top := m.Parts[0]
	c.headers(top)
	pos := top.BodyStart
	for _, p := range m.Parts[1:] {
		if c.stopped {
			break
		}
		if !p.InRaw || p.Start < pos {
			continue
		}
		c.body(m.Raw[pos:p.Start])
		if c.stopped {
			break
		}
		c.headers(p)
		pos = p.BodyStart
	}
	if !c.stopped && pos < len(m.Raw) {
		c.body(m.Raw[pos:])
	}
	return c.rep
}

func (c *checker) headers(p *content.Part) {
	for _, f := range p.Header {
		if c.stopped {
			return
		}
		table, mp := c.tableFor(p.Kind, f.Name)
		if mp == nil {
			continue
		}
		c.apply(table, mp, f.Logical)
	}
}

func (c *checker) tableFor(kind content.HeaderKind, name string) (string, *Map) {
	if kind == content.HeaderMIME || isMIMEHeader(name) {
		return TableMIME, c.t.MIME
	}
	if kind == content.HeaderNested {
		return TableNested, c.t.Nested
	}
	return TableHeader, c.t.Header
}

// body applies body_checks to each line of a body segment.
func (c *checker) body(seg []byte) {
	mp := c.t.Body
	if mp == nil {
		return
	}
	limit := c.t.BodySizeLimit
	if limit <= 0 {
		limit = 51200
	}
	lineLimit := c.t.LineLimit
	if lineLimit <= 0 {
		lineLimit = 2048
	}
	if len(seg) > limit {
		seg = seg[:limit]
	}
	for len(seg) > 0 && !c.stopped {
		nl := bytes.IndexByte(seg, '\n')
		var line []byte
		if nl < 0 {
			line, seg = seg, nil
		} else {
			line, seg = seg[:nl], seg[nl+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		for len(line) > lineLimit && !c.stopped {
			c.apply(TableBody, mp, string(line[:lineLimit]))
			line = line[lineLimit:]
		}
		if !c.stopped {
			c.apply(TableBody, mp, bytesToString(line))
		}
	}
}

func (c *checker) apply(table string, mp *Map, input string) {
	c.lines++
	if c.lines%64 == 0 && c.ctx.Err() != nil {
		c.rep.Incomplete = true
		c.stopped = true
		return
	}
	hit, ok, err := mp.lookup(input, &c.scratch, c.failed)
	if err != nil && len(c.rep.Errors) < 20 {
		c.rep.Errors = append(c.rep.Errors, err.Error())
	}
	if !ok {
		return
	}
	action, text := splitAction(hit.Result)
	if len(input) > 998 {
		input = input[:998]
	}
	f := Finding{Table: table, Action: action, Text: text, Hit: hit, Input: strings.Clone(input)}
	r := c.rep
	if len(r.Findings) < maxFindings {
		r.Findings = append(r.Findings, f)
	}
	switch action {
	case "DUNNO", "OK":
		return
	case "HOLD":
		r.Hold = true
	case "WARN", "INFO":
		r.Warn = true
	case "REDIRECT":
		r.Redirect = text
	case "FILTER":
		r.Filter = text
	case "BCC":
		if len(r.BCC) < 20 {
			r.BCC = append(r.BCC, text)
		}
	case "PREPEND":
		if len(r.Prepend) < 20 {
			r.Prepend = append(r.Prepend, text)
		}
	case "DISCARD":
		r.Discard = true
	case "REJECT":
		r.Reject = true
		r.Defer = strings.HasPrefix(text, "4.")
	case "DEFER":
		r.Reject, r.Defer = true, true
	default:
		if isReplyCode(action) {
			r.Reject = true
			r.Defer = action[0] == '4'
		}
	}
	if stopping(action) {
		c.stopped = true
		r.Decisive = &f
		return
	}
	if r.Decisive == nil {
		r.Decisive = &f
	}
}

// Reply returns the SMTP reply Postfix would give for a rejecting finding: REJECT
// (550 5.7.1, or 450 with a 4.x.x status), DEFER (450 4.7.1) or a 4xx/5xx reply, with
// an optional enhanced status code at the start of the text and "message content
// rejected" as the default text. "" for other actions.
func (f *Finding) Reply() string {
	code, class := "", byte('5')
	switch {
	case f.Action == "REJECT":
		code = "550"
	case f.Action == "DEFER":
		code, class = "450", '4'
	case isReplyCode(f.Action):
		code, class = f.Action, f.Action[0]
	default:
		return ""
	}
	text := f.Text
	enh := string(class) + ".7.1"
	if e, rest, _ := strings.Cut(text, " "); isEnhancedCode(e) {
		enh, text = e, strings.TrimSpace(rest)
		if f.Action == "REJECT" && e[0] == '4' {
			code = "450"
		}
	}
	if text == "" {
		text = "message content rejected"
	}
	return code + " " + enh + " " + text
}

func isEnhancedCode(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "4" && p[0] != "5" && p[0] != "2") {
		return false
	}
	for _, x := range p[1:] {
		if _, err := strconv.Atoi(x); err != nil || len(x) == 0 || len(x) > 3 {
			return false
		}
	}
	return true
}
