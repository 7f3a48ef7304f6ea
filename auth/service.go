package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the authentication part of the portcullis configuration: local users,
// an optional LDAP directory tried after them, and throttling around both.
type Config struct {
	// Users is the local user database (portcullis user add).
	Users DBConfig `yaml:"users"`
	// LDAP, when set, is a directory asked after the local users.
	LDAP *LDAPConfig `yaml:"ldap"`
	// Throttle slows down and locks out password guessing, for all logins.
	Throttle ThrottleConfig `yaml:"throttle"`
}

// Service is the assembled authentication: Auth serves SMTP AUTH, IMAP and POP3, and
// Exists says which addresses have a mailbox (for the routing maps and local delivery).
type Service struct {
	DB       *DB
	LDAP     *LDAP // nil without a directory
	Throttle *Throttle
	Auth     Authenticator // Throttle around Chain(DB, LDAP)

	existsMu    sync.Mutex
	existsCache map[string]existsEntry
}

type existsEntry struct {
	ok  bool
	exp time.Time
}

// Answers of Exists are kept for existsTTL: each message asks twice (at RCPT and at
// delivery), and a busy MX asks for the same few mailboxes all the time; a user added or
// deleted with `portcullis user` is seen within existsTTL.
const (
	existsTTL       = 10 * time.Second
	existsCacheSize = 100000
)

// Open opens the user database (Users.Path, default DATA/users.db) and assembles the
// Service. With metrics non-nil, authentication outcomes are counted as
// portcullis_auth_attempts_total{result="ok|invalid|throttled|unavailable"}.
func Open(cfg Config, dataDir string, log *slog.Logger, metrics prometheus.Registerer) (*Service, error) {
	if cfg.Users.Logger == nil {
		cfg.Users.Logger = log
	}
	s := &Service{}
	var err error
	if cfg.LDAP != nil {
		if s.LDAP, err = NewLDAP(*cfg.LDAP, log); err != nil {
			return nil, err
		}
	}
	if s.DB, err = OpenUserDB(cfg.Users, dataDir); err != nil {
		return nil, err
	}
	backends := []Authenticator{s.DB}
	if s.LDAP != nil {
		backends = append(backends, s.LDAP)
	}
	if s.Throttle, err = NewThrottle(Chain(backends...), cfg.Throttle); err != nil {
		s.Close()
		return nil, err
	}
	s.Auth = s.Throttle
	if metrics != nil {
		m := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis", Subsystem: "auth", Name: "attempts_total",
			Help: "Authentication attempts (SMTP AUTH, IMAP, POP3) by result.",
		}, []string{"result"})
		if err := metrics.Register(m); err != nil {
			s.Close()
			return nil, fmt.Errorf("auth: metrics: %w", err)
		}
		s.Auth = counted{s.Throttle, m}
	}
	return s, nil
}

// Exists says whether a canonical address (lower case, extension removed) has a mailbox:
// a local user, or else an LDAP user. Answers are cached for a few seconds; lookup
// errors are returned and not cached.
func (s *Service) Exists(ctx context.Context, addr string) (bool, error) {
	now := time.Now()
	s.existsMu.Lock()
	e, hit := s.existsCache[addr]
	s.existsMu.Unlock()
	if hit && now.Before(e.exp) {
		return e.ok, nil
	}
	ok, err := s.DB.Exists(ctx, addr)
	if !ok && err == nil && s.LDAP != nil {
		ok, err = s.LDAP.Exists(ctx, addr)
	}
	if err != nil {
		return false, err
	}
	s.existsMu.Lock()
	if s.existsCache == nil || len(s.existsCache) >= existsCacheSize {
		s.existsCache = map[string]existsEntry{} // crude but bounded; refilled by the next lookups
	}
	s.existsCache[addr] = existsEntry{ok, now.Add(existsTTL)}
	s.existsMu.Unlock()
	return ok, nil
}

// OpenUserDB opens the user database of cfg, at DATA/users.db unless cfg.Path is set:
// what `portcullis user add|passwd|del|list` use, with the same hashing parameters as
// the server.
func OpenUserDB(cfg DBConfig, dataDir string) (*DB, error) {
	if cfg.Path == "" {
		if dataDir == "" {
			return nil, errors.New("auth: no user database path and no data directory")
		}
		cfg.Path = DefaultDBPath(dataDir)
	}
	return OpenDBConfig(cfg)
}

// Close closes the database and the directory connections.
func (s *Service) Close() error {
	if s.LDAP != nil {
		s.LDAP.Close()
	}
	if s.DB != nil {
		return s.DB.Close()
	}
	return nil
}

type counted struct {
	next Authenticator
	m    *prometheus.CounterVec
}

func (c counted) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (string, error) {
	name, err := c.next.Authenticate(ctx, username, password, remote)
	c.m.WithLabelValues(resultLabel(err)).Inc()
	return name, err
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	}
	return "unavailable"
}
