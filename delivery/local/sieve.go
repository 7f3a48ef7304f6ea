package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/sieve"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

// SieveConfig configures the Sieve filtering at final delivery (issue 18): the admin's
// scripts before and after each user's active script (Pigeonhole's sieve_before and
// sieve_after), the limits, and the scripts users manage with ManageSieve or
// portcullis sieve.
type SieveConfig struct {
	// Disable turns Sieve off at delivery: every message goes to INBOX.
	Disable bool `yaml:"disable"`
	// Before lists scripts (files, or directories whose *.sieve files run in name order)
	// run before the user's active script; read at start and on SIGHUP.
	Before []string `yaml:"before"`
	// After lists scripts run after the user's active script.
	After []string `yaml:"after"`
	// GlobalDir holds the scripts `include :global "name"` reads (name.sieve).
	GlobalDir string `yaml:"global_dir"`
	// MaxScripts bounds the scripts a user may store (QUOTA/MAXSCRIPTS); default 20,
	// -1: no limit.
	MaxScripts int `yaml:"max_scripts"`
	// MaxScriptSize bounds one script; default 1MiB (Pigeonhole's).
	MaxScriptSize bytesize.Size `yaml:"max_script_size"`
	// MaxActions bounds the actions of one run; default 32 (Pigeonhole's).
	MaxActions int `yaml:"max_actions"`
	// MaxRedirects bounds the redirects of one run; default 4 (Pigeonhole's).
	MaxRedirects int `yaml:"max_redirects"`
	// MaxCPU bounds one script run's time; default 30s.
	MaxCPU time.Duration `yaml:"max_cpu"`
	// RedirectDuplicatePeriod is how long a redirect of the same message to the same
	// address is suppressed; default 12h (Pigeonhole's).
	RedirectDuplicatePeriod time.Duration `yaml:"redirect_duplicate_period"`
	// RedirectEnvelopeFrom is the envelope sender of a redirected message (Pigeonhole's
	// sieve_redirect_envelope_from): sender (the original sender, the default),
	// recipient, orig_recipient, user_email (the user's address), or an explicit
	// <address> or <>. A message from <> is always redirected from <>.
	RedirectEnvelopeFrom string `yaml:"redirect_envelope_from"`
	// MaxRedirectHops refuses to redirect a message that already went through this many
	// Sieve redirects (X-Sieve-Redirected-From fields); it is kept instead. Default 4.
	MaxRedirectHops int `yaml:"max_redirect_hops"`
	// SpamScoreMax is the rules' total score that spamtest reads as 100% (RFC 5235): the
	// score the spool records for the message, scaled; default 10. -1: spamtest sees
	// no score.
	SpamScoreMax float64 `yaml:"spam_score_max"`
}

func (c *SieveConfig) defaults() {
	if c.MaxScripts == 0 {
		c.MaxScripts = 20
	}
	if c.MaxScriptSize <= 0 {
		c.MaxScriptSize = sieve.DefaultMaxScriptSize
	}
	if c.MaxActions <= 0 {
		c.MaxActions = sieve.DefaultMaxActions
	}
	if c.MaxRedirects <= 0 {
		c.MaxRedirects = sieve.DefaultMaxRedirects
	}
	if c.MaxCPU <= 0 {
		c.MaxCPU = sieve.DefaultMaxCPU
	}
	if c.RedirectDuplicatePeriod <= 0 {
		c.RedirectDuplicatePeriod = 12 * time.Hour
	}
	if c.MaxRedirectHops <= 0 {
		c.MaxRedirectHops = sieve.DefaultMaxRedirectHops
	}
	if c.SpamScoreMax == 0 {
		c.SpamScoreMax = 10
	}
}

// WithDefaults returns c with its defaults filled in.
func (c SieveConfig) WithDefaults() SieveConfig {
	c.defaults()
	return c
}

// ScriptLimits are the per-user quotas of the config (for ManageSieve and the CLI).
func (c SieveConfig) ScriptLimits() store.ScriptLimits {
	c.defaults()
	return store.ScriptLimits{MaxScripts: max(c.MaxScripts, 0), MaxSize: int64(c.MaxScriptSize)}
}

// Options are the compiler's options for the config: the limits, the recipient delimiter
// and the :global include directory. Personal includes read from personal, which may be
// nil (they then compile against an empty script: a checker without a user).
func (c SieveConfig) Options(delimiter string, personal func(name string) ([]byte, error)) sieve.Options {
	c.defaults()
	return sieve.Options{
		Delimiter: delimiter,
		Limits: sieve.Limits{MaxScriptSize: int(c.MaxScriptSize), MaxActions: c.MaxActions,
			MaxRedirects: c.MaxRedirects, MaxCPU: c.MaxCPU},
		Include: func(loc sieve.Location, name string) ([]byte, error) {
			if strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
				return nil, fmt.Errorf("include %q: bad script name: %w", name, fs.ErrNotExist)
			}
			if loc == sieve.Global {
				if c.GlobalDir == "" {
					return nil, fmt.Errorf("include :global %q: no sieve.global_dir: %w", name, fs.ErrNotExist)
				}
				return os.ReadFile(filepath.Join(c.GlobalDir, name+".sieve"))
			}
			if personal == nil {
				return []byte{}, nil
			}
			return personal(name)
		},
	}
}

// Checker validates scripts as delivery compiles them; it implements managesieve.Checker.
type Checker struct{ opt sieve.Options }

// NewChecker returns the checker of the config's scripts.
func (c SieveConfig) NewChecker(delimiter string) *Checker {
	return &Checker{opt: c.Options(delimiter, nil)}
}

// Check compiles script and returns its warnings, one a line.
func (c *Checker) Check(script []byte) (string, error) {
	s, err := sieve.Compile(script, c.opt)
	if err != nil {
		return "", err
	}
	var w []string
	for _, e := range s.Warnings() {
		w = append(w, e.Error())
	}
	return strings.Join(w, "\n"), nil
}

// Extensions lists the extensions the compiler supports.
func (c *Checker) Extensions() []string { return sieve.Supported() }

// redirectOptions are the settings of the redirects user sends.
func (c SieveConfig) redirectOptions(user string) sieve.RedirectOptions {
	return sieve.RedirectOptions{EnvelopeFrom: c.RedirectEnvelopeFrom, UserEmail: user, MaxHops: c.MaxRedirectHops}
}

// sieveRun holds what New prepared for Sieve.
type sieveRun struct {
	cfg    SieveConfig
	before []*sieve.Script
	after  []*sieve.Script
	cache  *sieve.Cache
}

// loadScripts compiles the scripts of paths (files or directories of *.sieve files).
func loadScripts(paths []string, opt sieve.Options) ([]*sieve.Script, error) {
	var out []*sieve.Script
	for _, p := range paths {
		files := []string{p}
		if st, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("sieve: %w", err)
		} else if st.IsDir() {
			m, err := filepath.Glob(filepath.Join(p, "*.sieve"))
			if err != nil {
				return nil, err
			}
			sort.Strings(m)
			files = m
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("sieve: %w", err)
			}
			s, err := sieve.Compile(src, opt)
			if err != nil {
				return nil, fmt.Errorf("sieve: %s: %w", f, err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

func newSieveRun(cfg SieveConfig, delimiter string) (*sieveRun, error) {
	cfg.defaults()
	if err := cfg.redirectOptions("").Validate(); err != nil {
		return nil, fmt.Errorf("sieve.redirect_envelope_from: %w", err)
	}
	opt := cfg.Options(delimiter, nil)
	before, err := loadScripts(cfg.Before, opt)
	if err != nil {
		return nil, err
	}
	after, err := loadScripts(cfg.After, opt)
	if err != nil {
		return nil, err
	}
	return &sieveRun{cfg: cfg, before: before, after: after, cache: sieve.NewCache(opt, 0)}, nil
}

// ReloadSieve reads the admin's before, after and global scripts again (SIGHUP) and
// swaps them in; on an error the old ones stay in force.
func (d *Deliverer) ReloadSieve() error {
	if d.cfg.Sieve.Disable {
		return nil
	}
	sr, err := newSieveRun(d.cfg.Sieve, d.cfg.RecipientDelimiter)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	d.sieve.Store(sr)
	return nil
}

// host is what a script run asks of delivery (sieve.Host).
type host struct {
	u     *store.User
	sc    *store.Scripts
	score float64
	max   float64
}

func (h *host) MailboxExists(ctx context.Context, name string) bool {
	_, err := h.u.Mailbox(ctx, name)
	return err == nil
}

func (h *host) Seen(ctx context.Context, key string, _ time.Duration) bool {
	ok, err := h.sc.Remembered(ctx, key, time.Now())
	return err == nil && ok
}

func (h *host) Now() time.Time { return time.Now() }

func (h *host) SpamScore(context.Context) (float64, bool) {
	if h.max <= 0 {
		return 0, false
	}
	return min(max(h.score/h.max*100, 0), 100), true
}

// VirusScore: the spool records no virus verdict (the shipped rules refuse infected mail
// at DATA), so virustest sees the message as not tested.
func (h *host) VirusScore(context.Context) (int, bool) { return 0, false }

// sieveDeliver runs the scripts for user and performs their actions. It returns
// handled=false when the message is to be delivered the plain way (no script at all).
func (d *Deliverer) sieveDeliver(ctx context.Context, sr *sieveRun, rcpt, user string, env spool.Envelope, hdr string, msg io.Reader) (bool, error) {
	u, err := d.cfg.Store.Open(ctx, user)
	if err != nil {
		return true, storeError(user, err)
	}
	defer u.Release()
	sc := u.Scripts()
	name, src, err := sc.Active(ctx)
	if err != nil {
		d.log.Error("sieve: reading the active script; keeping the message in INBOX", "user", user, "err", err)
	}
	var scripts []*sieve.Script
	scripts = append(scripts, sr.before...)
	if len(src) > 0 {
		var s *sieve.Script
		if bytes.Contains(src, []byte("include")) {
			// Personal includes resolve against this user's scripts: not cached.
			s, err = sieve.Compile(src, sr.cfg.Options(d.cfg.RecipientDelimiter, func(n string) ([]byte, error) {
				b, err := sc.Get(ctx, n)
				if errors.Is(err, store.ErrNoScript) {
					return nil, fmt.Errorf("%w: %w", err, fs.ErrNotExist)
				}
				return b, err
			}))
		} else {
			s, err = sr.cache.Compile(src)
		}
		if err != nil {
			d.log.Error("sieve: the user's script does not compile; skipping it", "user", user, "script", name, "err", err)
		} else {
			scripts = append(scripts, s)
		}
	}
	scripts = append(scripts, sr.after...)
	if len(scripts) == 0 {
		return false, nil
	}
	// One buffer of the announced size (the spool's, LMTP's): io.ReadAll would grow it
	// from 512 bytes.
	maxSize := int64(d.cfg.Store.Config().MaxMessageSize)
	buf := bytes.NewBuffer(make([]byte, 0, min(max(env.Size, 0)+512, maxSize+1)))
	_, err = buf.ReadFrom(io.LimitReader(msg, maxSize+1))
	raw := buf.Bytes()
	if err != nil {
		return true, fmt.Errorf("local: reading the message for %s: %w", rcpt, err)
	}
	if int64(len(raw)) > int64(d.cfg.Store.Config().MaxMessageSize) {
		return true, storeError(user, store.ErrTooBig)
	}
	m := sieve.NewMessage(raw)
	senv := sieve.Envelope{From: env.From, To: rcpt, Auth: env.AuthUser}
	h := &host{u: u, sc: sc, score: env.Score, max: sr.cfg.SpamScoreMax}
	// Pigeonhole's multiscript semantics (sieve.RunSequence): one result shared by the
	// scripts, the next one runs only while the message is kept or to be kept.
	res, err := sieve.RunSequence(ctx, scripts, m, senv, h)
	if err != nil {
		// A failing script never loses the message: the result holds the implicit keep.
		d.log.Error("sieve: script failed; keeping the message", "user", user, "err", err)
	}
	if res == nil {
		res = &sieve.Result{Actions: []sieve.Action{sieve.Keep{Implicit: true}}, ImplicitKeep: true}
	}
	for _, w := range res.Warnings {
		d.log.Warn("sieve: run-time warning", "user", user, "warning", w)
	}
	actions, remember := res.Actions, res.Remember
	err = d.perform(ctx, sr, u, sc, rcpt, user, env, hdr, raw, actions)
	if err == nil {
		now := time.Now()
		for _, mem := range remember {
			if !mem.Refresh {
				if ok, _ := sc.Remembered(ctx, mem.Key, now); ok {
					continue
				}
			}
			if rerr := sc.Remember(ctx, mem.Key, now, now.Add(mem.Period)); rerr != nil {
				d.log.Warn("sieve: recording the duplicate/vacation memory", "user", user, "err", rerr)
			}
		}
	}
	return true, err
}

// splitHeader returns raw's header block (with its ending empty line) and body.
func splitHeader(raw []byte) ([]byte, []byte) {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		if j := bytes.Index(raw, []byte("\n\n")); j < 0 || i < j {
			return raw[:i+4], raw[i+4:]
		}
	}
	if j := bytes.Index(raw, []byte("\n\n")); j >= 0 {
		return raw[:j+2], raw[j+2:]
	}
	return raw, nil
}

func withHeader(raw, header []byte) []byte {
	if header == nil {
		return raw
	}
	_, body := splitHeader(raw)
	return append(append([]byte{}, header...), body...)
}

// perform executes the actions in order. A reject is a permanent failure (550 at LMTP
// time, a bounce from the queue, RFC 5429 §2.1); a store failure is the store's error.
func (d *Deliverer) perform(ctx context.Context, sr *sieveRun, u *store.User, sc *store.Scripts, rcpt, user string, env spool.Envelope, hdr string, raw []byte, actions []sieve.Action) error {
	for _, a := range actions {
		if r, ok := a.(sieve.Reject); ok {
			reason := strings.Join(strings.Fields(r.Reason), " ")
			if len(reason) > 200 {
				reason = reason[:200]
			}
			d.log.Info("sieve: reject", "user", user, "reason", reason)
			return delivery.Permanent("550 5.7.1 "+reason, fmt.Errorf("rejected by %s's Sieve script", user))
		}
	}
	stored := map[string]bool{}
	store1 := func(mailbox string, flags []string, header []byte) error {
		if stored[mailbox] {
			return nil
		}
		stored[mailbox] = true
		msg := io.MultiReader(strings.NewReader(hdr), bytes.NewReader(withHeader(raw, header)))
		_, err := u.Append(ctx, mailbox, msg, flags, time.Time{})
		return storeError(user, err)
	}
	for _, a := range actions {
		switch x := a.(type) {
		case sieve.Keep:
			if err := store1(store.Inbox, x.Flags, x.Header); err != nil {
				return err
			}
		case sieve.FileInto:
			mb := d.folder(ctx, u, user, x)
			if err := store1(mb, x.Flags, x.Header); err != nil {
				return err
			}
		case sieve.Discard:
			d.log.Info("sieve: discard", "user", user)
		case sieve.Redirect:
			if err := d.redirect(ctx, sr, sc, rcpt, user, env, raw, x); err != nil {
				// Not sent: the message is kept rather than lost.
				d.log.Warn("sieve: redirect not done; keeping the message", "user", user, "to", x.Address, "err", err)
				if err := store1(store.Inbox, nil, x.Header); err != nil {
					return err
				}
			}
		case sieve.Vacation:
			d.vacation(ctx, user, x)
		}
	}
	return nil
}

// folder returns where a fileinto stores: the folder if it exists, created with
// :create (RFC 5490 §3.2), the special-use folder (RFC 8579), else INBOX (logged).
func (d *Deliverer) folder(ctx context.Context, u *store.User, user string, x sieve.FileInto) string {
	if x.SpecialUse != "" {
		if mbs, err := u.Mailboxes(ctx); err == nil {
			for _, mb := range mbs {
				if strings.EqualFold(mb.SpecialUse, x.SpecialUse) {
					return mb.Name
				}
			}
		}
	}
	if _, err := u.Mailbox(ctx, x.Mailbox); err == nil {
		return x.Mailbox
	}
	if x.Create {
		err := u.Create(ctx, x.Mailbox, "")
		if err == nil || errors.Is(err, store.ErrMailboxExists) {
			return x.Mailbox
		}
		d.log.Warn("sieve: fileinto :create failed; storing in INBOX", "user", user, "folder", x.Mailbox, "err", err)
		return store.Inbox
	}
	d.log.Info("sieve: fileinto a folder that does not exist (no :create); storing in INBOX", "user", user, "folder", x.Mailbox)
	return store.Inbox
}

// redirect queues the message for x.Address as sieve.Redirect.Compose makes it (RFC 5228
// §4.2: the original sender stays the reverse-path), after its loop check and the
// duplicate check.
func (d *Deliverer) redirect(ctx context.Context, sr *sieveRun, sc *store.Scripts, rcpt, user string, env spool.Envelope, raw []byte, x sieve.Redirect) error {
	if d.cfg.Enqueue == nil {
		return errors.New("no queue to redirect through")
	}
	// The envelope sender, X-Sieve-Redirected-From and loop detection are the sieve
	// package's (Pigeonhole's behaviour); the user's address is the store account.
	senv := sieve.Envelope{From: env.From, To: rcpt}
	from, msg, err := x.Compose(raw, senv, sr.cfg.redirectOptions(user))
	if err != nil {
		return err
	}
	h := sieve.NewMessage(msg)
	// Duplicate suppression: the same message (by Message-ID, else its bytes) to the same
	// address once per period.
	id := strings.Join(h.Header("Message-ID"), "")
	if id == "" {
		sum := sha256.Sum256(raw)
		id = hex.EncodeToString(sum[:])
	}
	sum := sha256.Sum256([]byte(id + "\x00" + strings.ToLower(x.Address)))
	key := "redirect:" + hex.EncodeToString(sum[:16])
	now := time.Now()
	if ok, _ := sc.Remembered(ctx, key, now); ok {
		d.log.Info("sieve: duplicate redirect suppressed", "user", user, "to", x.Address)
		return nil
	}
	// Delivered-To is this delivery's trace (the loop check of the alias expansion,
	// delivery/dispatch), not the script's.
	out := "Delivered-To: " + rcpt + "\r\n"
	qid, err := d.cfg.Enqueue(ctx, spool.Envelope{From: from, To: []string{x.Address}, ReceivedAt: now},
		io.MultiReader(strings.NewReader(out), bytes.NewReader(msg)))
	if err != nil {
		return err
	}
	if err := sc.Remember(ctx, key, now, now.Add(sr.cfg.RedirectDuplicatePeriod)); err != nil {
		d.log.Warn("sieve: recording the redirect", "user", user, "err", err)
	}
	d.log.Info("sieve: redirect", "user", user, "to", x.Address, "queue_id", qid)
	return nil
}

// vacation queues an auto-reply (RFC 5230 §5) with the null sender and
// Auto-Submitted: auto-replied (RFC 3834 §5), unless the script's result says to skip it.
func (d *Deliverer) vacation(ctx context.Context, user string, v sieve.Vacation) {
	if v.Skip != "" {
		d.log.Info("sieve: vacation not sent", "user", user, "to", v.To, "why", v.Skip)
		return
	}
	if d.cfg.Enqueue == nil || v.To == "" {
		return
	}
	// The reply is the sieve package's (one composition for the delivery and the
	// conformance suite); its From: is the user's address unless :from says otherwise.
	now := time.Now()
	reply := v.Compose("<"+user+">", now, "<"+rand.Text()+"@"+d.hostname()+">")
	qid, err := d.cfg.Enqueue(ctx, spool.Envelope{From: "", To: []string{v.To}, ReceivedAt: now}, bytes.NewReader(reply))
	if err != nil {
		d.log.Warn("sieve: vacation reply not queued", "user", user, "to", v.To, "err", err)
		return
	}
	d.log.Info("sieve: vacation reply", "user", user, "to", v.To, "queue_id", qid)
}

func (d *Deliverer) hostname() string {
	if d.cfg.Hostname != "" {
		return d.cfg.Hostname
	}
	return "localhost"
}
