package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
	"github.com/portcullis-mail/portcullis/spool"
)

// Spool is what the quarantine needs of the queue; *spool.Spool implements it.
type Spool interface {
	List() ([]string, error)
	Envelope(id string) (spool.Envelope, error)
	Status(id string) (spool.Status, error)
	Open(id string) (spool.Envelope, *spool.Message, error)
	Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error)
	Append(id string, recs ...spool.Record) error
	Complete(id string, recs ...spool.Record) error
	Delete(id string) error
}

// ErrNotFound is returned for a message or recipient that is not (or no longer) in the
// quarantine.
var ErrNotFound = errors.New("quarantine: no such message")

// DefaultLifetime is how long a quarantined message is kept when Config.Lifetime is zero.
const DefaultLifetime = 30 * 24 * time.Hour

// Config configures an Area.
type Config struct {
	// Lifetime is how long a quarantined message is kept before Prune removes it.
	Lifetime time.Duration `yaml:"lifetime"`
	// DigestFrom is the sender of the digest emails that list a user's new quarantined
	// mail (each user chooses never, daily or weekly on the page); empty: the postmaster.
	DigestFrom string `yaml:"digest_from"`

	Logger *slog.Logger `yaml:"-"`
	// Decided, when set, is told of every recipient released, deleted or expired
	// (action "released", "deleted", "expired"; detail says by whom, and the released
	// copy's queue id), for the decision log's outcomes.
	Decided func(id, rcpt, action, detail string) `yaml:"-"`
	// Ham, when set, is given each released message: its recipient said it is not
	// spam, which a Bayes filter learns (errors are logged; the release stands).
	Ham func(ctx context.Context, rcpt string, msg io.Reader) error `yaml:"-"`
}

// Item is one quarantined message for one recipient.
type Item struct {
	ID         string // the queue id
	Rcpt       string // the recipient it is quarantined for
	From       string // the envelope sender
	HeaderFrom string
	Subject    string
	MessageID  string
	Received   time.Time
	Size       int64
	Score      float64
	Tags       []string
	ClientIP   string
}

// Area is the quarantine over a spool.
type Area struct {
	sp  Spool
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry // queue id → envelope and header; queued messages never change

	// act serialises Release, Delete and Prune's removal. Each checks that the item is
	// still quarantined and then changes it; two at once would both pass the check, and
	// two releases would deliver the message twice.
	act sync.Mutex
}

// entry is what never changes of a queued message: its envelope and, when quarantined,
// the header fields the page shows. Only the recipients' status is read on each list.
type entry struct {
	env  spool.Envelope
	read bool // h is read
	h    header
}

type header struct{ from, subject, msgid string }

// New returns the quarantine over sp.
func New(cfg Config, sp Spool) (*Area, error) {
	if sp == nil {
		return nil, errors.New("quarantine: no spool")
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Lifetime < 0 {
		return nil, fmt.Errorf("quarantine: lifetime %s is negative", cfg.Lifetime)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Area{sp: sp, cfg: cfg, log: cfg.Logger, entries: map[string]*entry{}}, nil
}

// Lifetime is the configured lifetime.
func (a *Area) Lifetime() time.Duration { return a.cfg.Lifetime }

// List returns the quarantined items whose recipient visible accepts (nil: every item),
// newest first. A message that cannot be read is skipped and logged, not fatal: the page
// still shows the rest.
func (a *Area) List(ctx context.Context, visible func(rcpt string) bool) ([]Item, error) {
	ids, err := a.sp.List()
	if err != nil {
		return nil, fmt.Errorf("quarantine: listing the queue: %w", err)
	}
	var out []Item
	live := make(map[string]bool, len(ids))
	for _, id := range ids {
		live[id] = true
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		items, err := a.items(id, visible)
		if err != nil {
			if !errors.Is(err, spool.ErrNotFound) && !errors.Is(err, ErrNotFound) {
				a.log.Warn("quarantine: cannot read queued message", "id", id, "err", err.Error())
			}
			continue
		}
		out = append(out, items...)
	}
	a.mu.Lock()
	for id := range a.entries { // forget the messages gone from the queue
		if !live[id] {
			delete(a.entries, id)
		}
	}
	a.mu.Unlock()
	slices.SortStableFunc(out, func(x, y Item) int {
		if c := y.Received.Compare(x.Received); c != 0 {
			return c
		}
		return strings.Compare(x.Rcpt, y.Rcpt)
	})
	return out, nil
}

// items returns the quarantined recipients of message id that visible accepts.
func (a *Area) items(id string, visible func(string) bool) ([]Item, error) {
	e, err := a.entry(id)
	if err != nil {
		return nil, err
	}
	env := e.env
	if !env.Quarantine {
		return nil, nil
	}
	st, err := a.sp.Status(id)
	if err != nil {
		return nil, err
	}
	if st.Released || st.Deleted {
		return nil, nil
	}
	var rcpts []string
	for _, r := range st.Remaining(env) {
		if (visible == nil || visible(r)) && !slices.Contains(rcpts, r) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return nil, nil
	}
	h, err := a.header(id, e)
	if err != nil {
		return nil, err
	}
	received := env.ReceivedAt
	if received.IsZero() {
		received, _ = spool.IDTime(id)
	}
	out := make([]Item, 0, len(rcpts))
	for _, r := range rcpts {
		out = append(out, Item{ID: id, Rcpt: r, From: env.From, HeaderFrom: h.from, Subject: h.subject,
			MessageID: h.msgid, Received: received, Size: env.Size, Score: env.Score, Tags: env.Tags, ClientIP: env.ClientIP})
	}
	return out, nil
}

// entry returns the cached envelope of message id, reading it on first use.
func (a *Area) entry(id string) (*entry, error) {
	a.mu.Lock()
	e, ok := a.entries[id]
	a.mu.Unlock()
	if ok {
		return e, nil
	}
	env, err := a.sp.Envelope(id)
	if err != nil {
		return nil, err
	}
	e = &entry{env: env}
	a.mu.Lock()
	a.entries[id] = e
	a.mu.Unlock()
	return e, nil
}

// header reads (once) the header fields the page shows.
func (a *Area) header(id string, e *entry) (header, error) {
	a.mu.Lock()
	read, h := e.read, e.h
	a.mu.Unlock()
	if read {
		return h, nil
	}
	_, msg, err := a.sp.Open(id)
	if err != nil {
		return header{}, err
	}
	defer msg.Close()
	// A header block is bounded by the SMTP server's limits; 256 KiB more is no header.
	// mailheader reads it as the rule engine did when it quarantined the message, and
	// as mail readers do: a junk line does not hide the fields after it.
	block, err := mailheader.ReadBlock(msg, 256<<10)
	if err != nil && !errors.Is(err, mailheader.ErrTooLong) {
		return header{}, fmt.Errorf("quarantine: reading the header of %s: %w", id, err)
	}
	var from, subject, msgid string
	for _, f := range mailheader.Parse(nil, block, 0).Fields {
		switch {
		case f.Is("From") && from == "":
			from = f.Value()
		case f.Is("Subject") && subject == "":
			subject = f.Value()
		case f.Is("Message-Id") && msgid == "":
			msgid = f.Value()
		}
	}
	h = header{from: decode(from), subject: decode(subject), msgid: msgid}
	a.mu.Lock()
	e.h, e.read = h, true
	a.mu.Unlock()
	return h, nil
}

// Get returns the item of message id for rcpt.
func (a *Area) Get(id, rcpt string) (Item, error) {
	if !spool.ValidID(id) {
		return Item{}, ErrNotFound
	}
	items, err := a.items(id, func(r string) bool { return r == rcpt })
	if err != nil {
		if errors.Is(err, spool.ErrNotFound) {
			return Item{}, ErrNotFound
		}
		return Item{}, err
	}
	if len(items) == 0 {
		return Item{}, ErrNotFound
	}
	return items[0], nil
}

// Message opens the quarantined message id for reading (the page's source view); the
// caller closes it. The caller has checked the user may see it (Get).
func (a *Area) Message(id string) (*spool.Message, error) {
	_, msg, err := a.sp.Open(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, ErrNotFound
	}
	return msg, err
}

// Release queues a copy of message id for rcpt alone, as accepted mail, and takes rcpt
// out of the quarantine. It returns the new queue id.
func (a *Area) Release(ctx context.Context, id, rcpt, by string) (string, error) {
	a.act.Lock()
	defer a.act.Unlock()
	if _, err := a.Get(id, rcpt); err != nil {
		return "", err
	}
	env, msg, err := a.sp.Open(id)
	if err != nil {
		return "", fmt.Errorf("quarantine: opening %s: %w", id, err)
	}
	defer msg.Close()
	copyEnv := env
	copyEnv.ID, copyEnv.To, copyEnv.Quarantine = "", []string{rcpt}, false
	// The copy enters the queue now: the queue's lifetime (delivery max_lifetime, five
	// days by default, less than the quarantine's) counts from ReceivedAt, and a copy
	// dated at the original's arrival would expire at its first attempt, without a DSN.
	copyEnv.ReceivedAt = time.Now()
	// A DSN for the copy would tell the sender of a message they never saw quarantined.
	copyEnv.Notify = map[string]string{rcpt: "NEVER"}
	newID, err := a.sp.Enqueue(ctx, copyEnv, io.NewSectionReader(msg, 0, msg.Size()))
	if err != nil {
		return "", fmt.Errorf("quarantine: queueing the released copy of %s: %w", id, err)
	}
	if err := a.finish(id, rcpt, "released from quarantine by "+by+" as "+newID, spool.Delivered); err != nil {
		return newID, err
	}
	a.decided(id, rcpt, "released", "by "+by+", queued as "+newID)
	if a.cfg.Ham != nil {
		if err := a.cfg.Ham(ctx, rcpt, io.NewSectionReader(msg, 0, msg.Size())); err != nil {
			a.log.Warn("quarantine: learning the released message as ham failed", "id", id, "err", err.Error())
		}
	}
	a.log.Info("quarantine: released", "id", id, "rcpt", rcpt, "by", by, "queue_id", newID)
	return newID, nil
}

// Delete takes rcpt out of the quarantine of message id without delivering and without a
// bounce.
func (a *Area) Delete(id, rcpt, by string) error {
	a.act.Lock()
	defer a.act.Unlock()
	if _, err := a.Get(id, rcpt); err != nil {
		return err
	}
	if err := a.finish(id, rcpt, "deleted from quarantine by "+by, spool.Failed); err != nil {
		return err
	}
	a.decided(id, rcpt, "deleted", "by "+by)
	a.log.Info("quarantine: deleted", "id", id, "rcpt", rcpt, "by", by)
	return nil
}

// finish records the final state of rcpt and removes the message once no recipient is
// left. DSN is set so that no bounce is ever sent for it.
func (a *Area) finish(id, rcpt, reply string, state spool.RcptState) error {
	rec := spool.Record{Op: spool.OpRcpt, Rcpt: rcpt, State: state, Reply: reply, DSN: true}
	err := a.sp.Complete(id, rec)
	if err == nil {
		a.forget(id)
		return nil
	}
	if !errors.Is(err, spool.ErrNotFinal) {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	if err := a.sp.Append(id, rec); err != nil {
		return fmt.Errorf("quarantine: %s: %w", id, err)
	}
	return nil
}

func (a *Area) decided(id, rcpt, action, detail string) {
	if a.cfg.Decided != nil {
		a.cfg.Decided(id, rcpt, action, detail)
	}
}

func (a *Area) forget(id string) {
	a.mu.Lock()
	delete(a.entries, id)
	a.mu.Unlock()
}

// Prune removes the quarantined messages older than the lifetime and returns how many.
// It takes the same lock as Release and Delete and checks each item again under it: an
// item released while the list was read is not expired (and the release not undone).
// An item is reported expired only once its message is gone.
func (a *Area) Prune(ctx context.Context, now time.Time) (int, error) {
	items, err := a.List(ctx, nil)
	if err != nil {
		return 0, err
	}
	a.act.Lock()
	defer a.act.Unlock()
	var ids []string
	rcpts := map[string][]string{}
	for _, it := range items {
		if now.Sub(it.Received) <= a.cfg.Lifetime {
			continue
		}
		if _, err := a.Get(it.ID, it.Rcpt); err != nil {
			continue // released or deleted meanwhile, or gone
		}
		if rcpts[it.ID] == nil {
			ids = append(ids, it.ID)
		}
		rcpts[it.ID] = append(rcpts[it.ID], it.Rcpt)
	}
	n := 0
	for _, id := range ids {
		if err := a.sp.Delete(id); err != nil && !errors.Is(err, spool.ErrNotFound) {
			a.log.Error("quarantine: cannot remove expired message", "id", id, "err", err.Error())
			continue
		}
		a.forget(id)
		for _, r := range rcpts[id] {
			a.decided(id, r, "expired", "after "+a.cfg.Lifetime.String())
		}
		a.log.Info("quarantine: expired", "id", id, "lifetime", a.cfg.Lifetime)
		n++
	}
	return n, nil
}

// Run prunes every hour until ctx ends.
func (a *Area) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := a.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Error("quarantine: pruning failed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wordDecoder decodes RFC 2047 encoded words in the charsets go-message knows (the
// same as content's and sieve's), not UTF-8 and Latin-1 alone.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decode decodes RFC 2047 encoded words for display; what cannot be decoded is shown raw.
func decode(s string) string {
	if out, err := wordDecoder.DecodeHeader(s); err == nil {
		return strings.TrimSpace(out)
	}
	return strings.TrimSpace(s)
}
