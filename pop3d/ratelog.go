package pop3d

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog writes log records at most logBurst at once and logRate per second for each
// message, so that clients cannot flood the log (issue 15 item 11) with failed logins or
// refused connections. What it drops is counted and reported, as "suppressed", with the
// next record of the message. (A copy of imapd's.)
type rateLog struct {
	l  *slog.Logger
	mu sync.Mutex
	b  map[string]*logBucket
}

const (
	logRate  = 5  // records per second and message
	logBurst = 20 // records at once
)

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

func newRateLog(l *slog.Logger) *rateLog { return &rateLog{l: l, b: map[string]*logBucket{}} }

func (r *rateLog) log(level slog.Level, msg string, args ...any) {
	if !r.l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	b := r.b[msg]
	if b == nil {
		if len(r.b) > 1000 { // messages are constants; this only guards against misuse
			clear(r.b)
		}
		b = &logBucket{tokens: logBurst, last: now}
		r.b[msg] = b
	}
	b.tokens = min(logBurst, b.tokens+now.Sub(b.last).Seconds()*logRate)
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		r.mu.Unlock()
		return
	}
	b.tokens--
	suppressed := b.suppressed
	b.suppressed = 0
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.l.Log(context.Background(), level, msg, args...)
}

func (r *rateLog) info(msg string, args ...any)  { r.log(slog.LevelInfo, msg, args...) }
func (r *rateLog) warn(msg string, args ...any)  { r.log(slog.LevelWarn, msg, args...) }
func (r *rateLog) error(msg string, args ...any) { r.log(slog.LevelError, msg, args...) }
