package decisionlog_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// BenchmarkInsert is the writer's rate into SQLite: records added in chunks the buffer
// holds, each chunk flushed (bench/decisionlog.sh measures it at 10 million records and on
// PostgreSQL).
func BenchmarkInsert(b *testing.B) {
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(b.TempDir(), "d.db"), Buffer: 50000, BatchSize: 5000}, decisionlog.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	t0 := time.Now()
	rec := decisionlog.Record{Time: t0, Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mail.example.net",
		Sender: "a@example.net", From: "a@example.net", Subject: "a subject of some length", Size: 4000,
		Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued", QueueID: "q",
		Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "none"}, {Name: "spf", Stage: "mail", Status: "pass"}}}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		rec.Time = t0.Add(time.Duration(i) * time.Millisecond)
		rec.Recipient = fmt.Sprintf("u%d@example.org", i%30000)
		rec.MessageID = fmt.Sprintf("%d@example.net", i)
		l.Add(rec)
		if i%20000 == 19999 {
			if err := l.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	// the process's CPU per record: the writer's whole cost (SQLite runs in-process),
	// steadier than the wall rate on a shared machine
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
}

// cpuTime is the process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAcceptedDelivered is the writer's cost per accepted message that is delivered
// soon after (the common case): its record, then its outcome a few hundred records later,
// as the queue reports deliveries while smtpd accepts more.
func BenchmarkAcceptedDelivered(b *testing.B) {
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(b.TempDir(), "d.db"), Buffer: 50000, BatchSize: 5000}, decisionlog.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	t0 := time.Now()
	rec := decisionlog.Record{Time: t0, Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mail.example.net",
		Sender: "a@example.net", From: "a@example.net", Subject: "a subject of some length", Size: 4000,
		Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued",
		Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "none"}, {Name: "spf", Stage: "mail", Status: "pass"}}}
	const lag = 300 // records accepted between a record and its outcome
	rcpt := func(i int) string { return fmt.Sprintf("u%d@example.org", i%30000) }
	deliver := func(i int) {
		l.SetOutcome(decisionlog.Outcome{QueueID: fmt.Sprintf("q%d", i), Recipient: rcpt(i), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Outcome: decisionlog.OutcomeDelivered, Relay: "local", DSN: "2.0.0", Reason: "250 2.0.0 delivered"})
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		rec.Time = t0.Add(time.Duration(i) * time.Millisecond)
		rec.Recipient = rcpt(i)
		rec.MessageID = fmt.Sprintf("%d@example.net", i)
		rec.QueueID = fmt.Sprintf("q%d", i)
		l.Add(rec)
		if i >= lag {
			deliver(i - lag)
		}
		if i%20000 == 19999 {
			if err := l.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := max(0, b.N-lag); i < b.N; i++ {
		deliver(i)
	}
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
}

// BenchmarkAcceptedDeliveredPaced is BenchmarkAcceptedDelivered at the pace of an SMTP
// server under load (bench/smtp.sh log, 50 clients: about a thousand messages a second):
// the writer gathers 100 ms of records, so each batch is about a hundred records and the
// outcomes of those a few batches older, not the thousands the unpaced benchmarks
// write at once. What a batch costs beyond its records (the statements, the
// transaction, the counters) weighs here as it does in the server. The pauses are not
// CPU: cpu-µs/record is the measure (records/s is the pace).
func BenchmarkAcceptedDeliveredPaced(b *testing.B) {
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(b.TempDir(), "d.db")}, decisionlog.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	t0 := time.Now()
	rec := decisionlog.Record{Time: t0, Session: "4Jq8Xk2mZs", Txn: "4Jq8Xk2mZt", Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.1"),
		HELO: "mail.example.net", Sender: "a@example.net", From: "a@example.net", Subject: "a subject of some length", Size: 4000,
		Stage: "data", Verdict: "accept", Reply: "250 2.0.0 OK queued as 4Jq8Xk2mZu", Score: 0.5,
		Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "none"}, {Name: "spf", Stage: "mail", Status: "pass"},
			{Name: "content", Stage: "data", Status: "none"}, {Name: "date", Stage: "data", Status: "pass", Reason: "date within bounds"}}}
	const step, lag = 100, 300 // records a batch; records accepted between a record and its outcome
	rcpt := func(i int) string { return fmt.Sprintf("u%d@example.org", i%30000) }
	deliver := func(i int) {
		l.SetOutcome(decisionlog.Outcome{QueueID: fmt.Sprintf("q%d", i), Recipient: rcpt(i), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Outcome: decisionlog.OutcomeDelivered, Relay: "local", DSN: "2.0.0", Reason: "250 2.0.0 delivered"})
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		rec.Time = t0.Add(time.Duration(i) * time.Millisecond)
		rec.Recipient = rcpt(i)
		rec.MessageID = fmt.Sprintf("%d@example.net", i)
		rec.QueueID = fmt.Sprintf("q%d", i)
		l.Add(rec)
		if i >= lag {
			deliver(i - lag)
		}
		if i%step == step-1 {
			time.Sleep(100 * time.Millisecond) // a thousand records a second
		}
	}
	for i := max(0, b.N-lag); i < b.N; i++ {
		deliver(i)
	}
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
}
