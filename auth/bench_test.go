package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/cputime"
)

// BenchmarkArgon2id measures one hash and one verification with the default
// parameters (64 MiB, 1 pass, 1 lane) and with 2 and 3 passes, reported as wall and
// CPU ms/op.
func BenchmarkArgon2id(b *testing.B) {
	for _, p := range []Argon2Params{DefaultArgon2Params, {Iterations: 2}, {Iterations: 3}} {
		p = p.withDefaults()
		name := fmt.Sprintf("m=64MiB,t=%d", p.Iterations)
		b.Run(name+"/hash", func(b *testing.B) {
			start, cpu := time.Now(), cputime.Used()
			for b.Loop() {
				if _, err := HashPassword("correct horse battery staple", p); err != nil {
					b.Fatal(err)
				}
			}
			report(b, start, cpu)
		})
		h, _ := HashPassword("correct horse battery staple", p)
		b.Run(name+"/verify", func(b *testing.B) {
			start, cpu := time.Now(), cputime.Used()
			for b.Loop() {
				if ok, _, _ := VerifyPassword(h, "correct horse battery staple", p); !ok {
					b.Fatal("mismatch")
				}
			}
			report(b, start, cpu)
		})
	}
}

// report adds wall and CPU milliseconds per operation (CPU time is what a loaded,
// shared machine does not inflate).
func report(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
	if c := cputime.Used(); c > 0 {
		b.ReportMetric(float64((c-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkLDAPAuthenticate compares pooled connections with a connection per attempt
// against a real slapd (plain LDAP and StartTLS), to choose the default.
func BenchmarkLDAPAuthenticate(b *testing.B) {
	srv := startSlapd(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		conf func(*LDAPConfig)
	}{
		{"pooled", nil},
		{"per-attempt", func(c *LDAPConfig) { c.MaxIdleConns = -1 }},
		{"starttls-pooled", func(c *LDAPConfig) { c.StartTLS, c.CAFile = true, srv.CAFile }},
		{"starttls-per-attempt", func(c *LDAPConfig) { c.StartTLS, c.CAFile, c.MaxIdleConns = true, srv.CAFile, -1 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLDAP(b, srv, tc.conf)
			start := time.Now()
			for b.Loop() {
				if _, err := l.Authenticate(ctx, "bob", "bob-pw", loopback); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}
