package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/spool"
)

// The queue commands' output on a spool with two held messages, one of them quarantined
// (the manager holds quarantined mail when it first sees it), as
// `portcullis queue list|show|release|delete` print it beside a running server.
func TestQueueCommands(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	const msg = "From: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n"
	enqueue := func(env spool.Envelope) string {
		id, err := sp.Enqueue(context.Background(), env, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	held := enqueue(spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}})
	quar := enqueue(spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}, Quarantine: true})
	var out bytes.Buffer
	if err := queueHold(sp, &out, "ALL"); err != nil || out.String() != "held: 2 message(s)\n" {
		t.Fatalf("hold: %v %q", err, out.String())
	}
	out.Reset()
	if err := queueList(sp, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), " hold ") != 2 || !strings.Contains(out.String(), "2 message(s)") {
		t.Fatalf("queue list:\n%s", out.String())
	}
	out.Reset()
	if err := queueShow(sp, &out, quar); err != nil || !strings.Contains(out.String(), "quarantine:  true") || !strings.Contains(out.String(), "Subject: hello") {
		t.Fatalf("show: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := queueRelease(sp, &out, "ALL"); err != nil || !strings.Contains(out.String(), "released: 2") {
		t.Fatalf("release: %v %s", err, out.String())
	}
	for _, id := range []string{held, quar} {
		if st, err := sp.Status(id); err != nil || st.Held {
			t.Fatalf("%s after release: %+v %v", id, st, err)
		}
	}
	out.Reset()
	if err := queueDelete(sp, &out, held); err != nil || out.String() != "deleted: 1 message(s)\n" {
		t.Fatalf("delete: %v %q", err, out.String())
	}
	if err := queueDelete(sp, &out, "../x"); !errors.Is(err, spool.ErrBadID) {
		t.Fatalf("delete of a bad id: %v", err)
	}
}
