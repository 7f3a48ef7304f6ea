package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/auth/ldaptest"
)

func TestServiceFromYAML(t *testing.T) {
	ctx := context.Background()
	srv := startSlapd(t)
	var cfg Config
	doc := `
users:
  argon2: {memory: 64KiB, iterations: 1, parallelism: 1}
ldap:
  url: ` + srv.URL + `
  start_tls: true
  ca_file: ` + srv.CAFile + `
  bind_dn: ` + srv.BindDN + `
  bind_password: ` + srv.BindPassword + `
  base_dn: ou=people,` + ldaptest.BaseDN + `
  filter: (&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s)))
throttle:
  max_failures_per_user: 2
  failure_delay: 1m
  max_failure_delay: 10m
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Users.Logger = quiet
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, t.TempDir(), quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.LDAP.Check(ctx); err != nil {
		t.Fatal(err)
	}
	pw, created, err := s.DB.EnsureUser(ctx, "postmaster@example.test")
	if err != nil || !created {
		t.Fatal(err)
	}
	if got, err := s.Auth.Authenticate(ctx, "postmaster@example.test", pw, ip1); err != nil || got != "postmaster@example.test" {
		t.Fatalf("local: %q, %v", got, err)
	}
	if got, err := s.Auth.Authenticate(ctx, "bob", "bob-pw", ip1); err != nil || got != "bob@example.test" {
		t.Fatalf("ldap: %q, %v", got, err)
	}
	// Failed answers are delayed (1m, but never past half the caller's remaining
	// time); after 2 failures the pair's penalty (2m) outlasts the deadline.
	short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	for range 2 {
		s.Auth.Authenticate(short, "bob", "x", ip2)
	}
	short, cancel = context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	if _, err := s.Auth.Authenticate(short, "bob", "bob-pw", ip2); !errors.Is(err, ErrThrottled) {
		t.Fatalf("throttle: %v", err)
	}
	for _, c := range []struct {
		result string
		want   float64
	}{{"ok", 2}, {"invalid", 2}, {"throttled", 1}, {"unavailable", 0}} {
		if m := counterValue(t, reg, c.result); m != c.want {
			t.Errorf("attempts{result=%s} = %v, want %v", c.result, m, c.want)
		}
	}
	for addr, want := range map[string]bool{"postmaster": true, "bob": true, "nobody": false} {
		if ok, err := s.Exists(ctx, addr+"@example.test"); ok != want || err != nil {
			t.Errorf("recipient %s: %v, %v", addr, ok, err)
		}
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "portcullis_auth_attempts_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
