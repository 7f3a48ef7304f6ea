package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"

	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/policy"
)

// RewriteHeader returns a Deps.PrepareMessage that lets fn edit the message's top-level
// header; fn reports whether it changed anything (when not, the message is used as it
// is). The binary uses it to remove forged Authentication-Results fields:
//
//	PrepareMessage: smtpd.RewriteHeader(func(h *textproto.Header) bool {
//		return dkim.StripForgedAuthResults(h, hostname) > 0
//	})
//
// A header that does not parse is left alone (the policies judge the raw bytes).
func RewriteHeader(fn func(h *textproto.Header) bool) func(context.Context, *policy.Transaction, []byte) ([]byte, error) {
	return func(_ context.Context, _ *policy.Transaction, raw []byte) ([]byte, error) {
		end := len(raw) // no blank line: everything is header
		if bytes.HasPrefix(raw, []byte("\r\n")) {
			end = 2
		} else if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
			end = i + 4
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw[:end])))
		if err != nil {
			return raw, nil
		}
		if !fn(&h) {
			return raw, nil
		}
		var b bytes.Buffer
		b.Grow(len(raw))
		if err := textproto.WriteHeader(&b, h); err != nil {
			return nil, fmt.Errorf("smtpd: rewrite header: %w", err)
		}
		b.Write(raw[end:])
		return b.Bytes(), nil
	}
}
