package web

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// BenchmarkCharts is the charts page's nine aggregations over a SQLite log of 30 days of a
// 1,000-user site (100,000 records): for one user's scope, and for an admin's (the site).
func BenchmarkCharts(b *testing.B) {
	ctx := context.Background()
	l, err := decisionlog.Open(ctx, decisionlog.Config{Path: filepath.Join(b.TempDir(), "d.db"), Retention: -1, Buffer: 50000, BatchSize: 5000}, decisionlog.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC()
	verdicts := []string{"accept", "accept", "reject", "quarantine", "tempfail"}
	cats := []string{"RBL", "Spam", "Virus", "Header Subject", "Body"}
	for i := range 100_000 {
		v := verdicts[r.IntN(len(verdicts))]
		rec := decisionlog.Record{Time: now.Add(-time.Duration(r.Int64N(int64(30 * 24 * time.Hour)))), Listener: "mx",
			ClientIP: netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), byte(r.IntN(256)), 1}),
			Sender:   fmt.Sprintf("s%d@d%d.example", r.IntN(1000), r.IntN(500)), Recipient: fmt.Sprintf("user%d@example.test", r.IntN(1000)),
			Subject: fmt.Sprintf("message %d", i), Stage: "data", Verdict: v, Score: r.Float64() * 15, Size: int64(1000 + r.IntN(50000))}
		if v != "accept" {
			rec.Category = cats[r.IntN(len(cats))]
			rec.Rule = rec.Category
		}
		l.Add(rec)
		if i%20000 == 19999 {
			if err := l.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := l.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	// the hourly maintenance: the completed days' counters summed per day, as a
	// running server's are
	if err := l.Optimize(ctx); err != nil {
		b.Fatal(err)
	}
	s := &Server{deps: Deps{Log: l}, now: time.Now}
	for name, scope := range map[string]decisionlog.Scope{
		"user":  {Recipients: []string{"user7@example.test", "sales7@example.test"}, AuthUser: "user7@example.test"},
		"admin": {All: true},
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.logFigures(ctx, scope, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
