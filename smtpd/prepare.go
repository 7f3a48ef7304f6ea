package smtpd

import (
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
// The header is read leniently (policy.ParseHeader): lines that are no header field are
// dropped when the header is rewritten, so a junk line cannot shield a forged field.
func RewriteHeader(fn func(h *textproto.Header) bool) func(context.Context, *policy.Transaction, []byte) ([]byte, error) {
	return func(_ context.Context, _ *policy.Transaction, raw []byte) ([]byte, error) {
		h, end, _ := policy.ParseHeader(raw)
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
