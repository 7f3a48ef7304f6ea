// Package ratelog is a log/slog logger that writes each message at most Burst times at
// once and Rate times a second, so that what a client can cause (a refused command
// repeated in a loop, failed logins, refused connections) cannot flood the log (issue 15
// item 11: a CREATE loop over the mailbox cap logged 9,023 ERROR lines in 0.9 s). What it
// drops is counted and reported, as "suppressed", with the next record of the message.
//
// The IMAP and POP3 servers log through it; it imports nothing of portcullis.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The allowance of each message.
const (
	Rate  = 5  // records per second
	Burst = 20 // records at once
)

// maxMessages bounds the messages tracked at once; messages are constants, so this only
// guards against a caller that formats values into them.
const maxMessages = 1000

// Logger writes through an slog.Logger, rate-limited per message. Its methods are safe
// for concurrent use.
type Logger struct {
	l  *slog.Logger
	mu sync.Mutex
	b  map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// New returns a Logger writing to l.
func New(l *slog.Logger) *Logger { return &Logger{l: l, b: map[string]*bucket{}} }

// Log writes a record at level unless msg has used up its rate.
func (r *Logger) Log(level slog.Level, msg string, args ...any) {
	if !r.l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	b := r.b[msg]
	if b == nil {
		if len(r.b) > maxMessages {
			clear(r.b)
		}
		b = &bucket{tokens: Burst, last: now}
		r.b[msg] = b
	}
	b.tokens = min(Burst, b.tokens+now.Sub(b.last).Seconds()*Rate)
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

func (r *Logger) Debug(msg string, args ...any) { r.Log(slog.LevelDebug, msg, args...) }
func (r *Logger) Info(msg string, args ...any)  { r.Log(slog.LevelInfo, msg, args...) }
func (r *Logger) Warn(msg string, args ...any)  { r.Log(slog.LevelWarn, msg, args...) }
func (r *Logger) Error(msg string, args ...any) { r.Log(slog.LevelError, msg, args...) }
