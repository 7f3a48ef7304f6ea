package dkim

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/portcullis-mail/portcullis/dnsx"
)

// nxResolver answers NXDOMAIN to everything, without I/O.
type nxResolver struct{}

func (nxResolver) Query(_ context.Context, name string, qt uint16) (*dnsx.Answer, error) {
	return nil, &dnsx.QueryError{Name: name, Type: qt, Rcode: dns.RcodeNameError, Kind: dnsx.ErrNXDomain}
}

// FuzzVerify: any message, however broken its header or signatures, gives a clean
// result or error from Verify, never a panic, and never a pass without keys.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=; b=\r\nFrom: a@example.com\r\n\r\nx"))
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; d=; s=\r\n x=1; t=99999999999999999999\r\n\r\n"))
	f.Add([]byte("From a@b\nno colon\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		sigs, err := Verify(context.Background(), nxResolver{}, bytes.NewReader(msg), nil)
		if err != nil {
			return
		}
		for _, s := range sigs {
			if s.Result == ResultPass {
				t.Fatalf("signature passed without a key: %+v", s)
			}
		}
	})
}

// FuzzAuthServID: the authserv-id parser never panics and returns a part of its input
// without line breaks.
func FuzzAuthServID(f *testing.F) {
	for _, s := range []string{"mx.example.com; spf=pass", "(c (nested)) mx.test 1; none", `"quoted id"; x`, "(unterminated", "\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id := AuthServID(v)
		if strings.ContainsAny(id, "\r\n") || !strings.Contains(v, id) {
			t.Fatalf("AuthServID(%q) = %q", v, id)
		}
		_ = FromDomain(v)
	})
}
