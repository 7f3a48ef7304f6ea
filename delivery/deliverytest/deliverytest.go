// Package deliverytest runs the queue manager in the tests of the packages around it
// (the dispatcher, the local deliverer): in the background while the test enqueues, and
// until it has nothing left to do.
package deliverytest

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/delivery"
)

// Start runs q in the background. ctx is the context it runs under; stop cancels it and
// waits for Run to return (defer it before what q uses is closed).
func Start(q *delivery.Manager) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	return ctx, func() { cancel(); <-done }
}

// WaitIdle waits until q has nothing due, for at most d, and fails the test otherwise.
func WaitIdle(tb testing.TB, q *delivery.Manager, d time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := q.WaitIdle(ctx); err != nil {
		tb.Fatal(err)
	}
}
