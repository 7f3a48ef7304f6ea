package sieve

import (
	"context"
	"strings"
	"testing"
)

func TestRunSequence(t *testing.T) {
	compile := func(src string) *Script {
		s, err := Compile([]byte(src), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := compile(`require ["imap4flags", "variables"]; set "v" "before"; addflag "$Global"; stop;`)
	user := compile(`require ["fileinto", "variables"]; if string :is "${v}" "" { fileinto "User"; }`)
	after := compile(`require "fileinto"; fileinto "After";`)
	msg := NewMessage([]byte(testMsg))
	res, err := RunSequence(context.Background(), []*Script{before, user, after}, msg, Envelope{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// stop ends only the first script; variables are per script; the user's fileinto
	// cancels the implicit keep, so the after script does not run; the internal flags
	// carry over.
	want := "store message in folder: User\n        + add IMAP flags: $Global\n\nImplicit keep:\n\n  (none)"
	if got := res.String(); !strings.Contains(got, want) || strings.Contains(got, "After") {
		t.Errorf("sequence result:\n%s", got)
	}
	res, err = RunSequence(context.Background(), []*Script{compile(`keep;`), after}, msg, Envelope{}, nil)
	if err != nil || !strings.Contains(res.String(), "After") {
		t.Errorf("after an explicit keep the sequence goes on: %v\n%s", err, res)
	}
	res, err = RunSequence(context.Background(), []*Script{compile(`require "ihave"; error "boom";`), after}, msg, Envelope{}, nil)
	if err == nil || !strings.Contains(err.Error(), "script 1") || !res.ImplicitKeep {
		t.Errorf("failing script: %v %v", err, res)
	}
}
