package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store/maildir"
)

// LocalDeliverer delivers a message to one local recipient. The mail store implements it
// (with Sieve and its index); Maildir is the foundation's plain implementation. An error
// that IsPermanent fails the recipient; any other error defers it.
type LocalDeliverer interface {
	Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error
}

// MaildirConfig configures Maildir.
type MaildirConfig struct {
	// Root holds the mailboxes: Root/DOMAIN/LOCAL/Maildir. Usually DATA/mail.
	Root string `yaml:"root"`
	// Users are the local addresses that exist (user@domain). Mail to any other local
	// address fails with 550 5.1.1. When Users is empty and Exists is nil, every local part
	// of a local domain gets a mailbox on first delivery.
	Users []string `yaml:"users"`
	// Exists, when set, is asked instead of Users (for example the auth package's user
	// database).
	Exists func(ctx context.Context, addr string) (bool, error) `yaml:"-"`
	// RecipientDelimiter separates an address extension ("user+tag"): mail to user+tag goes
	// to user's mailbox. Default "+"; "-" for qmail style.
	RecipientDelimiter string `yaml:"recipient_delimiter"`
}

// Maildir delivers into maildir folders Root/DOMAIN/LOCAL/Maildir, adding Return-Path and
// Delivered-To header fields (RFC 5321 §4.4).
type Maildir struct {
	cfg   MaildirConfig
	users map[string]bool
}

// NewMaildir returns a Maildir deliverer. It does no I/O: mailboxes are created on first
// delivery.
func NewMaildir(cfg MaildirConfig) (*Maildir, error) {
	if cfg.Root == "" {
		return nil, errors.New("delivery: maildir: root directory not set")
	}
	if cfg.RecipientDelimiter == "" {
		cfg.RecipientDelimiter = "+"
	}
	m := &Maildir{cfg: cfg, users: map[string]bool{}}
	for _, u := range cfg.Users {
		local, domain, err := m.mailbox(u)
		if err != nil {
			return nil, fmt.Errorf("delivery: maildir: user %q: %w", u, err)
		}
		m.users[local+"@"+domain] = true
	}
	return m, nil
}

// Path returns the maildir that receives mail for addr.
func (m *Maildir) Path(addr string) (maildir.Dir, error) {
	local, domain, err := m.mailbox(addr)
	if err != nil {
		return "", err
	}
	return maildir.Dir(filepath.Join(m.cfg.Root, domain, local, "Maildir")), nil
}

// mailbox returns the folded local part and domain of addr, checked to be safe as path
// elements.
func (m *Maildir) mailbox(addr string) (local, domain string, err error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", fmt.Errorf("address %q has no local part or domain", addr)
	}
	local, domain = strings.ToLower(addr[:i]), strings.ToLower(addr[i+1:])
	if d := m.cfg.RecipientDelimiter; d != "" {
		if j := strings.Index(local, d); j > 0 {
			local = local[:j]
		}
	}
	// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
	if len(local) > 64 || local == "" || local[0] == '.' || strings.ContainsAny(local, "/\\\"") {
		return "", "", fmt.Errorf("local part %q cannot name a mailbox", local)
	}
	for _, c := range []byte(local) {
		if c <= ' ' || c >= 0x7f {
			return "", "", fmt.Errorf("local part %q cannot name a mailbox", local)
		}
	}
	if len(domain) > 253 || domain[0] == '.' || strings.Contains(domain, "..") {
		return "", "", fmt.Errorf("domain %q cannot name a mailbox directory", domain)
	}
	for _, c := range []byte(domain) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", "", fmt.Errorf("domain %q cannot name a mailbox directory", domain)
		}
	}
	return local, domain, nil
}

// Deliver writes msg into rcpt's maildir (tmp, fsync, link into new, fsync new).
func (m *Maildir) Deliver(ctx context.Context, rcpt string, env spool.Envelope, msg io.Reader) error {
	local, domain, err := m.mailbox(rcpt)
	if err != nil {
		return Permanent("550 5.1.3 bad destination mailbox address", err)
	}
	addr := local + "@" + domain
	switch {
	case m.cfg.Exists != nil:
		ok, err := m.cfg.Exists(ctx, addr)
		if err != nil {
			return fmt.Errorf("delivery: looking up %s: %w", addr, err)
		}
		if !ok {
			return Permanent("550 5.1.1 <"+rcpt+">: no such user", nil)
		}
	case len(m.users) > 0 && !m.users[addr]:
		return Permanent("550 5.1.1 <"+rcpt+">: no such user", nil)
	}
	if strings.ContainsAny(env.From+rcpt, "\r\n") {
		return Permanent("550 5.1.7 address contains a line break", nil)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := maildir.Dir(filepath.Join(m.cfg.Root, domain, local, "Maildir"))
	if err := d.Create(); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	// RFC 5321 §4.4: the delivering system adds Return-Path with the reverse-path.
	// Delivered-To lets a later delivery detect a loop through this mailbox.
	hdr, _ := DeliveryHeaders(env.From, rcpt) // line breaks were refused above
	if _, err := d.Deliver(io.MultiReader(strings.NewReader(hdr), msg)); err != nil {
		return fmt.Errorf("delivery: into %s: %w", d, err)
	}
	return nil
}

// LocalTransport is the Transport that hands each recipient to a LocalDeliverer.
type LocalTransport struct{ Local LocalDeliverer }

// Deliver delivers to each recipient in turn, reading msg from its start each time.
func (t LocalTransport) Deliver(ctx context.Context, env spool.Envelope, rcpts []string, msg io.Reader) []Result {
	ra, seekable := msg.(io.ReadSeeker)
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
		if seekable {
			if _, err := ra.Seek(0, io.SeekStart); err != nil {
				out[i].Err = err
				continue
			}
		} else if i > 0 {
			out[i].Err = errors.New("delivery: message reader cannot be rewound")
			continue
		}
		out[i].Err = t.Local.Deliver(ctx, r, env, msg)
		if out[i].Err == nil {
			out[i].Reply = "250 2.0.0 delivered to mailbox"
		}
	}
	return out
}

// LocalRouterConfig configures the foundation's router.
type LocalRouterConfig struct {
	// Domains are the local domains, delivered by Local.
	Domains []string `yaml:"domains"`
	// Local delivers local recipients.
	Local LocalDeliverer `yaml:"-"`
	// Remote, when set, carries every other recipient (an SMTP relay). When nil, mail to
	// a non-local domain fails with 554 5.4.4.
	Remote Transport `yaml:"-"`
	// RemoteDest names Remote's destination for concurrency limits: per recipient domain
	// when empty.
	RemoteDest string `yaml:"-"`
}

// NewLocalRouter returns a Router for local domains and an optional remote transport.
func NewLocalRouter(cfg LocalRouterConfig) (Router, error) {
	if cfg.Local == nil {
		return nil, errors.New("delivery: local router: no local deliverer")
	}
	domains := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		domains = append(domains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	local := LocalTransport{Local: cfg.Local}
	return RouterFunc(func(ctx context.Context, rcpt string) (Route, error) {
		d := domainOf(rcpt)
		if slices.Contains(domains, d) {
			return Route{Transport: local, Dest: "local"}, nil
		}
		if cfg.Remote != nil {
			dest := cfg.RemoteDest
			if dest == "" {
				dest = "remote:" + d
			}
			return Route{Transport: cfg.Remote, Dest: dest}, nil
		}
		return Route{}, Permanent("554 5.4.4 no route to "+d+": relaying to other domains is not configured", nil)
	}), nil
}
