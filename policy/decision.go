package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Verdict is what the rules decided. Verdicts are ordered: when several apply (several
// recipients, several stages) the greatest wins, so accept < quarantine < discard <
// tempfail < reject.
type Verdict int

// The verdicts, in order.
const (
	Continue   Verdict = iota // no terminal rule matched: go on (accept at the end)
	Accept                    // accept now, skip the rest of this stage's rules
	Quarantine                // accept, but deliver to quarantine
	Discard                   // answer 250, then drop the message
	Tempfail                  // 4xx
	Reject                    // 5xx
)

var verdictNames = [...]string{"continue", "accept", "quarantine", "discard", "tempfail", "reject"}

func (v Verdict) String() string {
	if v < 0 || int(v) >= len(verdictNames) {
		return "verdict(" + strconv.Itoa(int(v)) + ")"
	}
	return verdictNames[v]
}

// Reply is an SMTP reply with its enhanced status code (RFC 3463).
type Reply struct {
	Code     int    // 554
	Enhanced string // "5.7.1"
	Text     string // one line, no CR/LF
}

func (r Reply) String() string {
	if r.Enhanced == "" {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// ParseReply parses `554 5.7.1 "text"`, `554 5.7.1 text` or `554 text`. Quotes around the
// text are optional. The enhanced code's class must match the reply code's.
func ParseReply(s string) (Reply, error) {
	s = strings.TrimSpace(s)
	f := strings.SplitN(s, " ", 2)
	code, err := strconv.Atoi(f[0])
	if err != nil || code < 200 || code > 599 {
		return Reply{}, fmt.Errorf("reply %q must start with a three-digit SMTP code", s)
	}
	r := Reply{Code: code}
	rest := ""
	if len(f) == 2 {
		rest = strings.TrimSpace(f[1])
	}
	if e, t, ok := strings.Cut(rest, " "); ok && isEnhanced(e) {
		r.Enhanced, rest = e, strings.TrimSpace(t)
	} else if isEnhanced(rest) {
		r.Enhanced, rest = rest, ""
	}
	if r.Enhanced != "" && r.Enhanced[0] != f[0][0] {
		return Reply{}, fmt.Errorf("reply %q: enhanced code %s does not match class %c", s, r.Enhanced, f[0][0])
	}
	if len(rest) >= 2 && rest[0] == '"' && rest[len(rest)-1] == '"' {
		rest = rest[1 : len(rest)-1]
	}
	if strings.ContainsAny(rest, "\r\n") {
		return Reply{}, fmt.Errorf("reply %q: text must be one line", s)
	}
	r.Text = rest
	return r, nil
}

func isEnhanced(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "2" && p[0] != "4" && p[0] != "5") {
		return false
	}
	for _, x := range p[1:] {
		if n, err := strconv.Atoi(x); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// Decision is the outcome of one stage's rules.
type Decision struct {
	Stage   Stage
	Verdict Verdict
	Reply   Reply  // set for Reject and Tempfail (and for Accept when a rule gave one)
	Rule    string // the rule that made the decision, "" when none did
	// Category is the deciding rule's category (its category: key, or its name); for a
	// refusal the SMTP server decided itself, its reason ("relay", "unknown_user").
	Category string
	// Score is what this stage's rules added; Transaction.Score is the running total.
	Score   float64
	Tags    []string
	Headers []Header // headers to add: from rules (add_header) and from policies' results
	// DryRun names the log_only rules that matched: what would have happened.
	DryRun []string
	// Results of the policies run or consulted at this stage, by instance name.
	Results map[string]Result
}

// Terminal reports whether the decision ends the SMTP transaction (or the recipient) with
// an error reply.
func (d Decision) Terminal() bool { return d.Verdict == Reject || d.Verdict == Tempfail }

// DefaultReply returns the reply used when a reject or tempfail rule gave none.
func DefaultReply(v Verdict) Reply {
	switch v {
	case Reject:
		return Reply{Code: 554, Enhanced: "5.7.1", Text: "rejected by policy"}
	case Tempfail:
		return Reply{Code: 451, Enhanced: "4.7.1", Text: "try again later"}
	}
	return Reply{Code: 250, Enhanced: "2.0.0", Text: "OK"}
}

// ReplyOf returns the reply a server sends for a terminal decision: the rule's reply,
// the default (DefaultReply) when it gave none, the class forced to match the verdict
// (a reject is always 5xx, a tempfail 4xx) and the text made fit for one reply line.
// The SMTP server, the policy-delegation server and the milter all answer with it.
func ReplyOf(d Decision) Reply {
	r := d.Reply
	def := DefaultReply(d.Verdict)
	if r.Code == 0 {
		return def
	}
	if d.Verdict == Reject && r.Code/100 != 5 || d.Verdict == Tempfail && r.Code/100 != 4 {
		r.Code, r.Enhanced = def.Code, def.Enhanced
	}
	if r.Enhanced == "" {
		r.Enhanced = def.Enhanced
	}
	r.Text = ReplyText(r.Text, def.Text)
	return r
}

// ReplyText is text fit for a reply line: control characters (a CR or LF would end the
// line early) become spaces, and an empty text is def.
func ReplyText(text, def string) string {
	text = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, text)
	if text == "" {
		return def
	}
	return text
}

// Outcome merges the non-terminal decisions of a mail transaction (those of the
// connection's connect and helo stages, then the transaction's): a discard anywhere
// discards the message, else a quarantine anywhere quarantines it; the headers to add
// and the tags (each once) follow in order. The SMTP server, the policy-delegation
// server and the milter decide the fate of an accepted message with it.
func Outcome(decs ...Decision) (v Verdict, headers []Header, tags []string) {
	seen := map[string]bool{}
	for _, d := range decs {
		if d.Verdict == Discard || d.Verdict == Quarantine && v != Discard {
			v = d.Verdict
		}
		headers = append(headers, d.Headers...)
		for _, t := range d.Tags {
			if !seen[t] {
				seen[t] = true
				tags = append(tags, t)
			}
		}
	}
	return v, headers, tags
}
