package dkim

import (
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
)

// AuthResultsInput is what goes into our Authentication-Results header.
type AuthResultsInput struct {
	// SPF: the result, and the identity checked (MAIL FROM address, or HELO name for the
	// null sender). Empty SPFResult leaves spf out.
	SPFResult   string
	SPFMailFrom string
	SPFHelo     string
	Signatures  []Signature
	// DMARC: empty DMARCResult leaves dmarc out.
	DMARCResult string
	FromDomain  string
	Policy      string // the DMARC policy applied, reported as policy.dmarc
}

// AuthResults returns the value of an Authentication-Results header field (RFC 8601)
// for authservID: spf, one dkim entry per signature (or dkim=none), and dmarc.
func AuthResults(authservID string, in AuthResultsInput) string {
	var rs []authres.Result
	if in.SPFResult != "" {
		rs = append(rs, &authres.SPFResult{
			Value: authres.ResultValue(in.SPFResult), From: safe(in.SPFMailFrom), Helo: safe(in.SPFHelo),
		})
	}
	if len(in.Signatures) == 0 {
		rs = append(rs, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, s := range in.Signatures {
		rs = append(rs, &authres.GenericResult{
			Method: "dkim",
			Value:  authres.ResultValue(s.Result),
			Params: map[string]string{
				"reason":   safe(s.Reason),
				"header.d": safe(s.Domain),
				"header.i": safe(s.Identifier),
				"header.s": safe(s.Selector),
			},
		})
	}
	if in.DMARCResult != "" {
		params := map[string]string{"header.from": safe(in.FromDomain)}
		if in.Policy != "" {
			params["policy.dmarc"] = in.Policy
		}
		rs = append(rs, &authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(in.DMARCResult), Params: params})
	}
	// authres leaves a space after results without parameters.
	return strings.TrimSpace(strings.ReplaceAll(authres.Format(authservID, rs), " ;", ";"))
}

// safe drops characters that have no place in a header field value (CR, LF, other
// controls, non-ASCII) and bounds the length; authres quotes the rest as needed.
func safe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 256; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// StripForgedAuthResults removes from h every Authentication-Results field whose
// authserv-id is authservID (case-insensitive): such fields arriving from outside are
// forgeries (RFC 8601 §5). It returns how many it removed. Fields of other
// authserv-ids are kept.
func StripForgedAuthResults(h *textproto.Header, authservID string) int {
	n := 0
	fields := h.FieldsByKey("Authentication-Results")
	for fields.Next() {
		if strings.EqualFold(AuthServID(fields.Value()), authservID) {
			fields.Del()
			n++
		}
	}
	return n
}

// AuthServID returns the authserv-id of an Authentication-Results value: the first
// token, after any comments, before ";" or white space (RFC 8601 §2.2).
func AuthServID(v string) string {
	v = skipCFWS(v)
	end := strings.IndexAny(v, "; \t\r\n(")
	if end < 0 {
		end = len(v)
	}
	id := v[:end]
	if len(id) >= 2 && id[0] == '"' {
		if j := strings.IndexByte(v[1:], '"'); j >= 0 {
			id = v[1 : j+1]
		}
		// a quoted id folded over lines is cut at the fold: an id is one line
		if k := strings.IndexAny(id, "\r\n"); k >= 0 {
			id = id[:k]
		}
	}
	return strings.TrimSuffix(id, ".")
}

// skipCFWS skips white space and nested comments at the start of s.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}
