package auth

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
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

// BenchmarkAuthenticateCached measures logins per second with the default argon2id
// parameters through the servers' path (Throttle around Chain(DB)), with the
// verified-credential cache off ("cold": every login hashes) and on after a first
// login ("warm"), one login at a time ("serial") and from as many goroutines as
// GOMAXPROCS ("parallel", a user each).
func BenchmarkAuthenticateCached(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"cold", -1}, {"warm", 0}} {
		db, err := OpenDBConfig(DBConfig{Path: filepath.Join(b.TempDir(), "users.db"), VerifyCacheTTL: tc.ttl, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		for i := range 8 {
			if err := db.Add(ctx, fmt.Sprintf("u%d@example.org", i), "correct horse battery staple"); err != nil {
				b.Fatal(err)
			}
		}
		a, err := NewThrottle(Chain(db), ThrottleConfig{})
		if err != nil {
			b.Fatal(err)
		}
		login := func(b *testing.B, user int) {
			if _, err := a.Authenticate(ctx, fmt.Sprintf("u%d@example.org", user), "correct horse battery staple", loopback); err != nil {
				b.Error(err)
			}
		}
		for i := range 8 {
			login(b, i) // warms the cache when on
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			start, cpu := time.Now(), cputime.Used()
			for b.Loop() {
				login(b, 0)
			}
			report(b, start, cpu)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			start, cpu := time.Now(), cputime.Used()
			var next atomic.Int32
			b.RunParallel(func(pb *testing.PB) {
				user := int(next.Add(1)) % 8 // one user per goroutine
				for pb.Next() {
					login(b, user)
				}
			})
			report(b, start, cpu)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
		})
	}
}

// BenchmarkLDAPStamp compares what the web page asks the directory at each request of
// an LDAP user: Exists (before: only whether the user still exists) and Stamp (now: the
// entry's password-change attributes), pooled, against a real slapd.
func BenchmarkLDAPStamp(b *testing.B) {
	srv := startSlapd(b)
	ctx := context.Background()
	l := newLDAP(b, srv, nil)
	b.Run("exists", func(b *testing.B) {
		for b.Loop() {
			if ok, err := l.Exists(ctx, "bob@example.test"); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("stamp", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.Stamp(ctx, "bob@example.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
