package decisionlog

import (
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/portcullis-mail/portcullis/policy"
)

// maxText bounds the header texts a record keeps (Subject, From:, Message-ID): they come
// from the sender, and a record is no place for a megabyte.
const maxText = 500

// wordDecoder decodes RFC 2047 encoded words in any charset go-message knows (the
// reader the content, quarantine, Sieve and Bayes packages use): a Subject in
// ISO-8859-2 or windows-1251 is shown as text, not as =?...?= soup.
var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// FromTransaction returns the record of decision d for recipient rcpt ("" for a
// connection, HELO or MAIL refusal): the connection, the envelope, the message header
// (From:, Subject decoded from RFC 2047, Message-ID), every policy result of the
// transaction (the rcpt-stage ones of rcpt only), the score and tags, the stage, verdict,
// rule and category. The caller adds what the transaction does not know: the reply, the
// queue id, the size, the time. It reads tx and keeps nothing of it.
func FromTransaction(tx *policy.Transaction, d policy.Decision, rcpt string) Record {
	c := &tx.Conn
	r := Record{
		Time:       time.Now(),
		Session:    c.ID,
		Listener:   c.Listener,
		ClientIP:   c.IP,
		ClientName: c.Hostname,
		HELO:       clip(c.HELO),
		AuthUser:   c.AuthUser,
		Sender:     tx.Envelope.From.String(),
		Recipient:  rcpt,
		Stage:      d.Stage.String(),
		Verdict:    d.Verdict.String(),
		Rule:       d.Rule,
		Category:   d.Category,
		Score:      tx.Score(),
		Tags:       tx.Tags(),
	}
	if d.Verdict == policy.Continue {
		r.Verdict = VerdictAccept
	}
	if m := tx.Message; m != nil {
		r.Size = m.Size
		r.From = headerAddress(m.Header.Get("From"))
		r.Subject = decodeText(m.Header.Get("Subject"))
		r.MessageID = clip(strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>"))
	}
	lrcpt := strings.ToLower(rcpt)
	tx.EachResult(func(name string, stage policy.Stage, forRcpt string, res policy.Result) {
		if stage == policy.StageRcpt && strings.ToLower(forRcpt) != lrcpt {
			return
		}
		r.Policies = append(r.Policies, PolicyResult{Name: name, Stage: stage.String(), Status: string(res.Status), Reason: res.Reason, Score: res.Score})
	})
	return r
}

// headerAddress returns the address of a From: field, or the field itself (clipped) when
// it does not parse.
func headerAddress(v string) string {
	if v == "" {
		return ""
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return clip(a.Address)
	}
	return decodeText(v)
}

// decodeText decodes RFC 2047 encoded words and keeps one line of at most maxText bytes.
func decodeText(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		v = d
	}
	return clip(v)
}

// clip makes s one line of valid UTF-8 of at most maxText bytes.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > maxText {
		s = s[:maxText]
		s = strings.ToValidUTF8(s, "")
	}
	return strings.TrimSpace(s)
}
