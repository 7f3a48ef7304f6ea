package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the authentication part of the portcullis configuration: local users,
// an optional LDAP directory tried after them, throttling around both, and recipient
// validation for the SMTP server.
type Config struct {
	// Users is the local user database (portcullis user add).
	Users DBConfig `yaml:"users"`
	// LDAP, when set, is a directory asked after the local users.
	LDAP *LDAPConfig `yaml:"ldap"`
	// Throttle slows down and locks out password guessing, for all logins.
	Throttle   ThrottleConfig   `yaml:"throttle"`
	Recipients RecipientsConfig `yaml:"recipients"`
}

// Service is the assembled authentication: Auth serves SMTP AUTH, IMAP and POP3;
// Recipients is smtpd's RecipientValidator.
type Service struct {
	DB         *DB
	LDAP       *LDAP // nil without a directory
	Throttle   *Throttle
	Auth       Authenticator // Throttle around Chain(DB, LDAP)
	Recipients *Recipients
}

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
	sources := []UserLookup{s.DB}
	if s.LDAP != nil {
		backends = append(backends, s.LDAP)
		sources = append(sources, s.LDAP)
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
	if s.Recipients, err = NewRecipients(cfg.Recipients, sources...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
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
