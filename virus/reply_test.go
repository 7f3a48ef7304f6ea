package virus

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseReply(t *testing.T) {
	good := []struct {
		in   string
		want Reply
	}{
		{"stream: OK", Reply{Kind: ReplyOK}},
		{"stream: Win.Test.EICAR_HDB-1 FOUND", Reply{Kind: ReplyFound, Signature: "Win.Test.EICAR_HDB-1"}},
		{"stream: Portcullis.Test.EICAR.UNOFFICIAL FOUND", Reply{Kind: ReplyFound, Signature: "Portcullis.Test.EICAR.UNOFFICIAL"}},
		{"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", Reply{Kind: ReplyFound, Signature: "Heuristics.Limits.Exceeded.MaxFileSize"}},
		{"stream: YARA.some rule FOUND", Reply{Kind: ReplyFound, Signature: "YARA.some rule"}},
		{"INSTREAM size limit exceeded. ERROR", Reply{Kind: ReplySizeLimit, Message: "INSTREAM size limit exceeded."}},
		{"3: INSTREAM size limit exceeded. ERROR", Reply{Kind: ReplySizeLimit, ID: 3, Message: "INSTREAM size limit exceeded."}},
		{"stream: Can't allocate memory ERROR", Reply{Kind: ReplyError, Message: "Can't allocate memory"}},
		{"12: stream: OK", Reply{Kind: ReplyOK, ID: 12}},
		{"1: stream: Eicar-Signature FOUND", Reply{Kind: ReplyFound, ID: 1, Signature: "Eicar-Signature"}},
		{"COMMAND READ TIMED OUT ERROR", Reply{Kind: ReplyError, Message: "COMMAND READ TIMED OUT"}},
	}
	for _, tc := range good {
		got, err := ParseReply([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	bad := []string{
		"", "OK", "stream: ok", "stream:  FOUND", " FOUND", "stream: FOUND", "FOUND",
		"x: stream: OK", "PONG", "UNKNOWN COMMAND", "stream: OK\n", "stream: a\x00b FOUND",
		"stream: \xff FOUND", " ERROR", "stream:  ERROR", "99999999999999999999: stream: OK",
		"stream: " + strings.Repeat("A", 600) + " FOUND", strings.Repeat("B", MaxReplyLen+1),
		"Eicar FOUND", "stream: OK FOUND extra",
	}
	for _, in := range bad {
		if got, err := ParseReply([]byte(in)); err == nil {
			t.Errorf("ParseReply(%q) = %+v, want an error", in, got)
		}
	}
}

// FuzzParseReply checks that no input panics, that errors never come with a verdict, and
// that a parsed verdict is consistent.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: Win.Test.EICAR_HDB-1 FOUND", "INSTREAM size limit exceeded. ERROR",
		"2: stream: OK", "stream: Can't allocate memory ERROR", "garbage", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReply(b)
		if err != nil {
			if r.Kind != 0 {
				t.Fatalf("error %v with kind %v", err, r.Kind)
			}
			return
		}
		if !utf8.Valid(b) || len(b) > MaxReplyLen {
			t.Fatalf("accepted invalid input %q", b)
		}
		switch r.Kind {
		case ReplyOK:
			if r.Signature != "" || r.Message != "" {
				t.Fatalf("OK with details: %+v", r)
			}
		case ReplyFound:
			if r.Signature == "" || strings.TrimSpace(r.Signature) != r.Signature || !strings.Contains(string(b), r.Signature) {
				t.Fatalf("bad signature in %+v from %q", r, b)
			}
		case ReplyError, ReplySizeLimit:
			if strings.TrimSpace(r.Message) == "" {
				t.Fatalf("error without message: %+v", r)
			}
		default:
			t.Fatalf("unknown kind %v", r.Kind)
		}
	})
}
