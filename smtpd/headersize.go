package smtpd

import (
	"bytes"
	"fmt"

	"github.com/portcullis-mail/portcullis/policy"
)

// checkHeaderSize refuses a message whose header block is larger than
// Config.MaxHeaderSize with 552 5.3.4 (RFC 5321 §4.5.3.1.9 and §4.5.3.1.10: a limit
// exceeded is reported with the reply of the excess, 552 for too much mail data; RFC
// 3463 5.3.4, message too big for system). It runs before PrepareMessage and the data
// stage: a header no reader should have to hold is refused whole rather than read in
// part, since what a policy does not read it cannot check, while the recipient's mail
// reader would show it all.
func (st *connState) checkHeaderSize(raw []byte) error {
	limit := int(st.srv.cfg.MaxHeaderSize)
	if !headerTooLarge(raw, limit) {
		return nil
	}
	st.srv.m.message(st.l.cfg.Name, "rejected")
	r := policy.Reply{Code: 552, Enhanced: "5.3.4",
		Text: fmt.Sprintf("Message header exceeds the limit of %d bytes (max_header_size)", limit)}
	return st.refuse(policy.StageData, r, "header_too_large")
}

var crlfcrlf = []byte("\r\n\r\n")

// headerTooLarge reports whether the header block at the start of raw (every line up to
// the empty line that ends it, that line excluded) is longer than limit bytes. A
// message without an empty line is all header. raw has CRLF line endings (bare CR and
// LF are refused before), so the empty line is the first CRLF CRLF, as
// internal/mailheader finds it; only the first limit+2 bytes are looked at.
func headerTooLarge(raw []byte, limit int) bool {
	if limit <= 0 || len(raw) <= limit {
		return false
	}
	if bytes.HasPrefix(raw, crlfcrlf[2:]) {
		return false // no header at all
	}
	// The header ends with the CRLF before the empty line: at most limit bytes means a
	// CRLF CRLF starting at limit-2 or earlier.
	return !bytes.Contains(raw[:min(len(raw), limit+2)], crlfcrlf)
}
