package delivery

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

type outcomeLog struct {
	mu  sync.Mutex
	got []Outcome
}

func (l *outcomeLog) RecordOutcome(o Outcome) {
	l.mu.Lock()
	l.got = append(l.got, o)
	l.mu.Unlock()
}

func (l *outcomeLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, o := range l.got {
		out = append(out, fmt.Sprintf("%s %s %s removed=%t", o.Rcpt, o.Status, o.Dest, o.Removed))
	}
	return out
}

// Each recipient's result reaches the OutcomeRecorder once recorded: deferred, then
// delivered; bounced; and the last outcome of a message that leaves the queue says so.
func TestOutcomesReported(t *testing.T) {
	out := &outcomeLog{}
	remote := flaky(1)
	r := newRig(t, rigOpts{remote: remote, users: []string{"alice@example.test"},
		cfg: Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Outcomes: out}})
	id := r.enqueue(spool.Envelope{From: "alice@example.test", To: []string{"alice@example.test", "nobody@example.test", "x@remote.example"}}, body)
	r.drain(time.Now().Add(10*time.Second), "message not delivered")
	r.idle()
	got := out.lines()
	// the bounce to alice is a message of its own, delivered locally
	want := []string{
		"alice@example.test delivered local removed=false",
		"nobody@example.test bounced local removed=false",
		"x@remote.example deferred remote:remote.example removed=false",
		"x@remote.example delivered remote:remote.example removed=true",
	}
	var mine []string
	out.mu.Lock()
	for i, o := range out.got {
		if o.QueueID == id {
			mine = append(mine, got[i])
			if o.Arrived.IsZero() || o.Time.IsZero() || o.Reply == "" || o.From != "alice@example.test" {
				t.Errorf("outcome %+v lacks a field", o)
			}
		}
	}
	out.mu.Unlock()
	slices.Sort(mine[:2]) // one attempt: map order
	if !slices.Equal(mine, want) {
		t.Fatalf("outcomes of %s:\n%q\nwant\n%q\nall: %q", id, mine, want, got)
	}
}
