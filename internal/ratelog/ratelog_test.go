package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestBurstThenRate: a message is written Burst times at once, then dropped; what was
// dropped is counted on the next record written once the rate lets one through. Other
// messages have their own allowance, and a level the handler ignores costs nothing.
func TestBurstThenRate(t *testing.T) {
	var out bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	for range Burst + 30 {
		r.Info("refused", "n", 1)
	}
	r.Warn("other")
	r.Debug("below the level")
	if n := strings.Count(out.String(), "msg=refused"); n != Burst {
		t.Fatalf("%d records at once, want %d:\n%s", n, Burst, out.String())
	}
	if !strings.Contains(out.String(), "msg=other") || strings.Contains(out.String(), "below the level") {
		t.Fatalf("other messages:\n%s", out.String())
	}
	out.Reset()
	time.Sleep(time.Second/Rate + 50*time.Millisecond)
	r.Info("refused", "n", 2)
	if got := strings.TrimSpace(out.String()); !strings.HasSuffix(got, "n=2 suppressed=30") {
		t.Fatalf("after a pause: %q", got)
	}
}

// TestManyMessages: formatting values into messages cannot grow the logger without bound.
func TestManyMessages(t *testing.T) {
	r := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	for i := range 5 * maxMessages {
		r.Info(strings.Repeat("x", i%97) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(r.b) > maxMessages+1 {
		t.Fatalf("%d messages tracked", len(r.b))
	}
}
