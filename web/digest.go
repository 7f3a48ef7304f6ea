package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/spool"
)

// DigestLists are the digest preferences; *quarantine.Lists implements it.
type DigestLists interface {
	DueDigests(ctx context.Context, now time.Time) ([]quarantine.DigestUser, error)
	ClaimDigest(ctx context.Context, user string, last, t time.Time) (bool, error)
}

// DigestConfig configures the digests.
type DigestConfig struct {
	Lists DigestLists
	// From is the digest's sender (envelope and From:).
	From string
	// Enqueue queues the digest for delivery; (*spool.Spool).Enqueue.
	Enqueue func(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error)
	// Every is how often due digests are looked for (default an hour).
	Every time.Duration
}

// maxDigestItems bounds one digest; the rest are on the page.
const maxDigestItems = 200

// SendDigests sends every due digest: to each user whose daily or weekly digest is due, a
// plain-text list of the mail quarantined for them since the last one, each with a link
// that logs them in to that item (a ticket valid Config.TicketLifetime, once). A user with nothing new
// gets no mail, and their clock restarts. It returns how many were sent.
func (s *Server) SendDigests(ctx context.Context, dc DigestConfig, now time.Time) (int, error) {
	if s.deps.Quarantine == nil {
		return 0, nil
	}
	due, err := dc.Lists.DueDigests(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("digests: %w", err)
	}
	sent := 0
	var errs []error
	for _, u := range due {
		// One user's failure (their queue refused, their list unreadable) is reported,
		// not a stop: the users after them still get theirs.
		ok, err := s.sendDigest(ctx, dc, u, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("digests: %s: %w", u.User, err))
			continue
		}
		if ok {
			sent++
		}
	}
	return sent, errors.Join(errs...)
}

// sendDigest sends u's digest if they have new quarantined mail, and restarts their
// clock. It claims the digest first: of the nodes sharing the lists, one sends it. It
// says whether a digest went.
func (s *Server) sendDigest(ctx context.Context, dc DigestConfig, u quarantine.DigestUser, now time.Time) (bool, error) {
	claimed, err := dc.Lists.ClaimDigest(ctx, u.User, u.LastSent, now)
	if err != nil || !claimed {
		return false, err
	}
	sent, err := s.queueDigest(ctx, dc, u, now)
	if err != nil {
		// Unclaimed, so the next round tries again.
		if _, err2 := dc.Lists.ClaimDigest(ctx, u.User, now, u.LastSent); err2 != nil {
			err = errors.Join(err, err2)
		}
	}
	return sent, err
}

// queueDigest queues u's digest when there is new quarantined mail for them.
func (s *Server) queueDigest(ctx context.Context, dc DigestConfig, u quarantine.DigestUser, now time.Time) (bool, error) {
	sess := &session{user: u.User}
	items, err := s.deps.Quarantine.List(ctx, s.visible(ctx, sess, false))
	if err != nil {
		return false, err
	}
	var fresh []quarantine.Item
	for _, it := range items {
		if it.Received.After(u.LastSent) && len(fresh) < maxDigestItems {
			fresh = append(fresh, it)
		}
	}
	if len(fresh) == 0 {
		return false, nil
	}
	msg, err := s.digestMessage(ctx, u.User, dc.From, fresh, len(items), now)
	if err != nil {
		return false, err
	}
	env := spool.Envelope{From: dc.From, To: []string{u.User}, ReceivedAt: now, Notify: map[string]string{u.User: "NEVER"}}
	if _, err := dc.Enqueue(ctx, env, strings.NewReader(msg)); err != nil {
		return false, fmt.Errorf("queueing: %w", err)
	}
	s.log.Info("web: quarantine digest queued", "user", u.User, "items", len(fresh))
	return true, nil
}

func (s *Server) digestMessage(ctx context.Context, user, from string, items []quarantine.Item, total int, now time.Time) (string, error) {
	var b strings.Builder
	base := strings.TrimSuffix(s.cfg.URL, "/")
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <digest.%d.%s>\r\nAuto-Submitted: auto-generated\r\n",
		from, user, mime.QEncoding.Encode("utf-8", fmt.Sprintf("Quarantine: %d new message(s)", len(items))),
		now.Format(time.RFC1123Z), now.UnixNano(), strings.ReplaceAll(from, "@", "."))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	fmt.Fprintf(&b, "These messages for you were put in quarantine: they are not in your mailbox.\r\n")
	fmt.Fprintf(&b, "Open one to release it, delete it, or always allow or block its sender.\r\n")
	fmt.Fprintf(&b, "They are deleted %s after they arrived. %d in quarantine now.\r\n\r\n", days(s.deps.Quarantine.Lifetime()), total)
	exp := now.Add(s.cfg.TicketLifetime)
	stamp, err := s.ticketStamp(ctx, user) // once for the digest's links
	if err != nil {
		return "", err
	}
	for _, it := range items {
		tk := s.sign(ticket{user: user, id: it.ID, rcpt: it.Rcpt, exp: exp.Unix(), nonce: randomToken()[:22], stamp: stamp})
		subj := oneLine(it.Subject)
		if subj == "" {
			subj = "(no subject)"
		}
		fmt.Fprintf(&b, "%s  %s\r\n  %s\r\n  %s/ticket?t=%s\r\n\r\n", it.Received.UTC().Format("2006-01-02 15:04"), oneLine(it.From), subj,
			base, tk)
	}
	fmt.Fprintf(&b, "Each link works once, for %s. Your quarantine: %s/quarantine\r\n", lifetime(s.cfg.TicketLifetime), base)
	return b.String(), nil
}

// lifetime says d in days, or hours when it is not a whole number of days.
func lifetime(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return fmt.Sprintf("%d hours", int(d.Hours()))
}

// oneLine keeps a header value from breaking the digest's lines, and bounds it.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len([]rune(s)) > 200 {
		s = string([]rune(s)[:200]) + "…"
	}
	return s
}

// RunDigests sends the due digests at once and then every dc.Every until ctx ends: a
// server restarted more often than Every still sends them.
func (s *Server) RunDigests(ctx context.Context, dc DigestConfig) {
	every := dc.Every
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.SendDigests(ctx, dc, s.now()); err != nil && ctx.Err() == nil {
			s.log.Error("web: sending digests failed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
