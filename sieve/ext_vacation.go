package sieve

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"
)

// vacation (RFC 5230) and vacation-seconds (RFC 6131), with Pigeonhole's period bounds
// (sieve_vacation_min_period 1d, default 7d, max 60d) and its rules for when not to
// answer.

func init() {
	extensions["vacation"] = true
	extensions["vacation-seconds"] = true
	commands["vacation"] = &cmdSpec{ext: "vacation", compile: compileVacation}
}

// Vacation periods (Pigeonhole's defaults).
const (
	VacationMinPeriod     = 24 * time.Hour
	VacationDefaultPeriod = 7 * 24 * time.Hour
	VacationMaxPeriod     = 60 * 24 * time.Hour
)

// maxSubjectRunes bounds a reply's subject (Pigeonhole's
// sieve_vacation_max_subject_codepoints).
const maxSubjectRunes = 256

type vacationCmd struct {
	pos       srcPos
	period    time.Duration
	subject   *strExpr
	from      *strExpr
	addresses []*strExpr
	mime      bool
	handle    *strExpr
	reason    *strExpr
}

func clampPeriod(d time.Duration) time.Duration {
	return min(max(d, VacationMinPeriod), VacationMaxPeriod)
}

func compileVacation(c *compiler, n *node) cmd {
	pa, ok := c.args(n, []tagSpec{
		{name: "days", param: aNumber, group: "period"},
		{name: "seconds", ext: "vacation-seconds", param: aNumber, group: "period"},
		{name: "subject", param: aString},
		{name: "from", param: aString},
		{name: "addresses", param: aStringList},
		{name: "mime"},
		{name: "handle", param: aString},
	})
	if !ok || !c.noTests(n) || !c.positional(n, pa, aString) {
		return nil
	}
	x := &vacationCmd{pos: n.pos, period: VacationDefaultPeriod, mime: pa.has("mime"), reason: c.str(pa.pos[0].strs[0])}
	if a, ok := pa.tags["days"]; ok {
		x.period = clampPeriod(time.Duration(min(a.num, 1<<20)) * 24 * time.Hour)
	}
	if a, ok := pa.tags["seconds"]; ok {
		x.period = clampPeriod(time.Duration(min(a.num, 1<<30)) * time.Second)
	}
	if a, ok := pa.tags["subject"]; ok {
		x.subject = c.str(a.strs[0])
	}
	if a, ok := pa.tags["from"]; ok {
		x.from = c.str(a.strs[0])
		if x.from.constant() {
			if l, ok := parseAddressList(x.from.lit); !ok || len(l) != 1 || !l[0].hasDomain {
				c.errf(a.pos, "specified :from address '%s' is invalid for vacation action", x.from.lit)
				return nil
			}
		}
	}
	if a, ok := pa.tags["addresses"]; ok {
		x.addresses = c.strList(a)
	}
	if a, ok := pa.tags["handle"]; ok {
		x.handle = c.str(a.strs[0])
	}
	return x
}

func (x *vacationCmd) exec(r *runner) error {
	r.currentPos = x.pos
	if r.hadVacation {
		return r.errorf(x.pos, "duplicate vacation action not allowed")
	}
	if r.hadReject {
		return r.errorf(x.pos, "vacation action conflicts with the earlier reject")
	}
	if err := r.countAction(x.pos); err != nil {
		return err
	}
	r.hadVacation = true
	v := Vacation{To: r.env.From, Reason: x.reason.eval(r), Mime: x.mime, Period: x.period}
	if x.from != nil {
		v.From = x.from.eval(r)
	}
	var subj string
	if x.subject != nil {
		subj = x.subject.eval(r)
	}
	if x.handle != nil {
		v.Handle = x.handle.eval(r)
	} else {
		// The default handle depends on the arguments (RFC 5230 §4.2).
		mime := ""
		if x.mime {
			mime = "mime"
		}
		h := sha256.Sum256([]byte(subj + "\x00" + v.From + "\x00" + mime + "\x00" + v.Reason))
		v.Handle = hex.EncodeToString(h[:8])
	}
	vo := r.s.opt.Vacation
	if subj == "" {
		orig := ""
		if s := r.header("subject"); len(s) > 0 {
			orig = decodeHeader(s[0])
		}
		switch {
		case orig != "" && vo.DefaultSubjectTemplate != "":
			subj = strings.NewReplacer("%$", orig, "%{subject}", orig, "%%", "%").Replace(vo.DefaultSubjectTemplate)
		case orig != "":
			subj = "Auto: " + orig
		case vo.DefaultSubject != "":
			subj = vo.DefaultSubject
		default:
			subj = "Automated reply"
		}
	}
	// Pigeonhole limits the subject (256 characters), marking the cut with "…".
	maxRunes := vo.MaxSubjectRunes
	if maxRunes <= 0 {
		maxRunes = maxSubjectRunes
	}
	if utf8.RuneCountInString(subj) > maxRunes {
		rs := []rune(subj)
		subj = string(rs[:maxRunes-1]) + "\u2026"
	}
	v.Subject = subj
	if id := r.header("message-id"); len(id) > 0 {
		v.InReplyTo = strings.TrimSpace(id[0])
	}
	refs := ""
	if rf := r.header("references"); len(rf) > 0 {
		refs = strings.Join(strings.Fields(rf[0]), " ")
	}
	if v.InReplyTo != "" {
		refs = strings.TrimSpace(refs + " " + v.InReplyTo)
	}
	v.References = refs
	v.ToHeader = "<" + v.To + ">"
	for _, h := range []string{"sender", "resent-sender", "from", "resent-from", "reply-to"} {
		for _, val := range r.header(h) {
			if l, ok := parseAddressList(val); ok && len(l) == 1 && (vo.ToHeaderIgnoreEnvelope || strings.EqualFold(l[0].all(), v.To)) {
				v.ToHeader = strings.TrimSpace(val)
				break
			}
		}
		if v.ToHeader != "<"+v.To+">" {
			break
		}
	}
	var addrs []string
	for _, a := range x.addresses {
		addrs = append(addrs, a.eval(r))
	}
	var matched string
	v.Skip, matched = r.vacationSkip(addrs, v.From)
	if v.From == "" && vo.UserEmail != "" {
		v.From = vo.UserEmail
	} else if v.From == "" && matched != "" && !strings.EqualFold(matched, r.env.To) {
		// Answer from the address the message was sent to (Pigeonhole does).
		v.From = matched
	}
	key := "vacation:" + v.Handle + ":" + strings.ToLower(r.env.From)
	if v.Skip == "" && r.host.Seen(r.ctx, key, v.Period) {
		v.Skip = "already replied to this sender within the period"
	}
	if v.Skip == "" {
		r.remember = append(r.remember, Memory{Key: key, Period: v.Period})
	}
	r.acts = append(r.acts, v)
	return nil
}

// vacationSkip says why no reply is sent (RFC 5230 §4.6 and Pigeonhole's checks), or
// "" and which of the user's addresses the message was sent to.
func (r *runner) vacationSkip(addresses []string, from string) (skip, matched string) {
	sender := r.env.From
	if sender == "" {
		return "the message has no return path", ""
	}
	sa := splitAddr(sender)
	lp := strings.ToLower(sa.local)
	switch {
	case lp == "mailer-daemon", lp == "listserv", lp == "majordomo", lp == "mailer",
		strings.HasSuffix(lp, "-request"), strings.HasPrefix(lp, "owner-"):
		return "the sender is a system address", ""
	}
	for _, h := range []string{"list-id", "list-owner", "list-subscribe", "list-post", "list-unsubscribe", "list-help", "list-archive"} {
		if len(r.header(h)) > 0 {
			return "the message is from a mailing list (" + h + ")", ""
		}
	}
	for _, v := range r.header("auto-submitted") {
		if !strings.EqualFold(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]), "no") {
			return "the message is auto-submitted", ""
		}
	}
	for _, v := range r.header("x-auto-response-suppress") {
		for _, f := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
			if strings.EqualFold(f, "all") || strings.EqualFold(f, "oof") {
				return "the sender suppresses auto-replies (X-Auto-Response-Suppress)", ""
			}
		}
	}
	for _, v := range r.header("precedence") {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "bulk", "list", "junk":
			return "the message has precedence " + strings.TrimSpace(v), ""
		}
	}
	vo := r.s.opt.Vacation
	mine := append([]string{r.env.To, vo.UserEmail}, addresses...)
	if vo.UseOriginalRecipient {
		mine = append(mine, r.env.OrigTo)
	}
	if from != "" {
		if l, ok := parseAddressList(from); ok && len(l) == 1 {
			mine = append(mine, l[0].all())
		}
	}
	for _, m := range mine {
		if m != "" && strings.EqualFold(m, sender) {
			return "the sender is the recipient", ""
		}
	}
	for _, h := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
		for _, v := range r.header(h) {
			l, _ := parseAddressList(v)
			for _, a := range l {
				for _, m := range mine {
					if m != "" && strings.EqualFold(a.all(), m) {
						return "", m
					}
				}
			}
		}
	}
	if vo.DontCheckRecipient {
		return "", ""
	}
	return "the message is not addressed to the recipient", ""
}

// Compose returns the reply (RFC 5230 §5): from is the reply's From: address when
// v.From is empty (the user's address), messageID its Message-ID (with brackets). The
// reply carries Auto-Submitted: auto-replied (RFC 3834 §5) and is sent with the null
// reverse path. With Mime, Reason is a MIME entity placed as it is.
func (v *Vacation) Compose(from string, now time.Time, messageID string) []byte {
	if v.From != "" {
		from = v.From
	}
	var b strings.Builder
	b.WriteString("From: " + encodeHeaderValue(from) + "\r\n")
	b.WriteString("To: " + encodeHeaderValue(v.ToHeader) + "\r\n")
	b.WriteString("Subject: " + encodeHeaderValue(v.Subject) + "\r\n")
	b.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	if messageID != "" {
		b.WriteString("Message-ID: " + messageID + "\r\n")
	}
	if v.InReplyTo != "" {
		b.WriteString("In-Reply-To: " + v.InReplyTo + "\r\n")
	}
	if v.References != "" {
		b.WriteString("References: " + v.References + "\r\n")
	}
	b.WriteString("Auto-Submitted: auto-replied (vacation)\r\n")
	b.WriteString("Precedence: bulk\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(v.Reason, "\r\n", "\n"), "\n", "\r\n")
	if v.Mime {
		b.WriteString(body)
		return []byte(b.String())
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\r\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}
