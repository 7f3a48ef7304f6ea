package sieve

import (
	"errors"
	"strings"
	"testing"
)

func TestRedirectCompose(t *testing.T) {
	raw := []byte("Return-Path: <old@example.net>\r\nFrom: a@example.net\r\nSubject: hi\r\n folded\r\n\r\nbody\r\n")
	env := Envelope{From: "a@example.net", To: "bob@example.org", OrigTo: "b@example.org"}
	x := &Redirect{Address: "c@example.com"}
	from, msg, err := x.Compose(raw, env, RedirectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Sieve-Redirected-From: bob@example.org\r\nFrom: a@example.net\r\nSubject: hi\r\n folded\r\n\r\nbody\r\n"
	if from != "a@example.net" || string(msg) != want {
		t.Fatalf("from %q msg %q", from, msg)
	}
	for opt, want := range map[string]string{"recipient": "bob@example.org", " orig_recipient ": "b@example.org",
		"user_email": "bob@example.org", "<bs@example.com>": "bs@example.com", "<>": "", "sender": "a@example.net"} {
		if from, _, _ := x.Compose(raw, env, RedirectOptions{EnvelopeFrom: opt}); from != want {
			t.Errorf("EnvelopeFrom %q: sender %q, want %q", opt, from, want)
		}
	}
	// The null sender stays null whatever the setting says.
	if from, _, _ := x.Compose(raw, Envelope{To: "bob@example.org"}, RedirectOptions{EnvelopeFrom: "<bs@example.com>"}); from != "" {
		t.Errorf("null sender redirected from %q", from)
	}
	// Loops: the user's own mark (any case, in brackets), or too many hops.
	looped := []byte("X-Sieve-Redirected-From: <Bob@Example.org>\r\n" + string(raw))
	if _, _, err := x.Compose(looped, env, RedirectOptions{}); !errors.Is(err, ErrRedirectLoop) {
		t.Errorf("loop not detected: %v", err)
	}
	hops := []byte(strings.Repeat("X-Sieve-Redirected-From: z@example.com\r\n", 2) + string(raw))
	if _, _, err := x.Compose(hops, env, RedirectOptions{MaxHops: 2}); !errors.Is(err, ErrRedirectLoop) {
		t.Errorf("hop limit not applied: %v", err)
	}
	if _, _, err := x.Compose(hops, env, RedirectOptions{}); err != nil {
		t.Errorf("2 hops under the default limit: %v", err)
	}
	// editheader's header replaces the message's.
	x.Header = []byte("Subject: edited\r\n\r\n")
	if _, msg, _ := x.Compose(raw, env, RedirectOptions{}); string(msg) != "X-Sieve-Redirected-From: bob@example.org\r\nSubject: edited\r\n\r\nbody\r\n" {
		t.Errorf("edited: %q", msg)
	}
	if _, _, err := (&Redirect{Address: "c@example.com\r\nBcc: x"}).Compose(raw, env, RedirectOptions{}); err == nil {
		t.Error("an address with a line break was accepted")
	}
	for v, ok := range map[string]bool{"": true, " Recipient ": true, "<>": true, "<bs@example.com>": true,
		"<nodomain>": false, "sendr": false, "<a@b\r\nX: y>": false} {
		if err := (RedirectOptions{EnvelopeFrom: v}).Validate(); (err == nil) != ok {
			t.Errorf("Validate(%q) = %v", v, err)
		}
	}
}
