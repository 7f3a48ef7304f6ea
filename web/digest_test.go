package web

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// TestDigestOneFailureStopsNoOne: when one user's digest cannot be queued, the users
// after them still get theirs, and the failure is reported.
func TestDigestOneFailureStopsNoOne(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := r.lists.SetDigest(ctx, u, "daily"); err != nil {
			t.Fatal(err)
		}
		r.quarantine("x@spam.test", "digest-item", u)
	}
	var queued []string
	dc := DigestConfig{Lists: r.lists, From: "postmaster@example.test", Enqueue: func(_ context.Context, env spool.Envelope, msg io.Reader) (string, error) {
		if env.To[0] == "alice@example.test" {
			return "", errors.New("queue refused alice's digest")
		}
		_, _ = io.Copy(io.Discard, msg)
		queued = append(queued, env.To[0])
		return "x", nil
	}}
	n, err := r.srv.SendDigests(ctx, dc, time.Now().Add(25*time.Hour))
	if err == nil {
		t.Error("alice's failure not reported")
	}
	if n != 1 || len(queued) != 1 || queued[0] != "bob@example.test" {
		t.Errorf("sent %d, queued %v; want bob's digest despite alice's failure", n, queued)
	}
}
