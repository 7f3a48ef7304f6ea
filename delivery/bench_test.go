package delivery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

// BenchmarkLocalDelivery measures how fast the queue manager drains 4 KiB messages from
// the spool into maildirs (messages/s, each one fsynced in the maildir and removed from
// the spool).
func BenchmarkLocalDelivery(b *testing.B) {
	dir := b.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n"), 64)
	for i := 0; i < b.N; i++ {
		env := spool.Envelope{From: "a@example.org", To: []string{"bob@example.test"}, ReceivedAt: time.Now()}
		if _, err := sp.Enqueue(context.Background(), env, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
	md := newTestMaildir(filepath.Join(dir, "mail"))
	router := testRouter(md, nil)
	q, _ := New(Config{PerDestination: 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sp, router)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	if err := q.WaitIdle(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	if ids, _ := sp.List(); len(ids) != 0 {
		b.Fatalf("%d messages left", len(ids))
	}
	cancel()
	<-done
}
