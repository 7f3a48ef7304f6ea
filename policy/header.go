package policy

import (
	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
)

// ParseHeader reads the header block of a raw message (CRLF or LF line endings) as a
// mail reader would: up to the first empty line, skipping lines that are neither a header
// field nor a continuation (mailheader.Parse). Strict parsers stop at such a line, which
// would let one junk line at the top hide From:, Content-Type and forged
// Authentication-Results from every check while the recipient's mail reader still shows
// them. end is the offset of the body (just past the empty line, or len(raw) when there
// is none); malformed reports skipped lines. The fields keep their bytes as written,
// with CRLF line endings, so that textproto.WriteHeader writes them back unchanged.
func ParseHeader(raw []byte) (h textproto.Header, end int, malformed bool) {
	var buf [32]mailheader.Field
	mh := mailheader.Parse(buf[:0], raw, 0)
	// AddRaw puts a field on top of the header: add them bottom up.
	for i := len(mh.Fields) - 1; i >= 0; i-- {
		h.AddRaw(mailheader.CRLF(mh.Fields[i].Raw))
	}
	return h, mh.End, mh.Junk || mh.MboxFrom
}
