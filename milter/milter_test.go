package milter_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

// bodyCheck is a data-stage policy: it records the message it saw.
type bodyCheck struct{ last *atomic.Pointer[[]byte] }

func (b bodyCheck) CheckData(ctx context.Context, tx *policy.Transaction) policy.Result {
	raw, err := tx.Message.Bytes()
	if err != nil {
		return policy.Result{Status: policy.StatusTempError, Err: err}
	}
	cp := append([]byte(nil), raw...)
	b.last.Store(&cp)
	return policy.Result{Status: policy.StatusPass, Headers: []policy.Header{{Name: "X-Body-Check", Value: "seen"}}}
}

const testRules = `
rules:
  - name: spammer
    stage: mail
    if: sender.address == "spammer@bad.test"
    reject: 550 5.7.1 "go away"
  - name: busy
    stage: rcpt
    if: rcpt.local == "busy"
    tempfail: 451 4.7.1 "try later please"
  - name: body
    stage: data
    if: body.pass
    score: 1.5
  - name: reject
    if: msg.subject == "reject me"
    reject: 554 5.7.1 "content refused"
  - name: later
    if: msg.subject == "later"
    tempfail: 451 4.7.2 "content later"
  - name: drop
    if: msg.subject == "drop"
    discard: true
  - name: hold
    if: msg.subject == "hold"
    quarantine: true
  - name: spam-score
    stage: data
    if: "true"
    add_header: "X-Spam-Score: {{score}}"
`

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newEngine(t testing.TB) (*policy.Engine, *atomic.Pointer[[]byte]) {
	t.Helper()
	rules, err := policy.ParseRules([]byte(testRules), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	last := new(atomic.Pointer[[]byte])
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler),
		Policies: map[string]policy.Policy{"body": bodyCheck{last}}})
	if err != nil {
		t.Fatal(err)
	}
	return eng, last
}

// startMilter serves a milter on addr and returns its address and what the data
// stage saw last.
func startMilter(t testing.TB, addr string) (string, *atomic.Pointer[[]byte]) {
	t.Helper()
	return startMilterRecording(t, addr, nil)
}

func startMilterRecording(t testing.TB, addr string, rec milter.DecisionRecorder) (string, *atomic.Pointer[[]byte]) {
	t.Helper()
	eng, last := newEngine(t)
	s, err := milter.New(milter.Config{}, milter.Deps{Engine: eng, Decisions: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := milter.Listen(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), last
}
