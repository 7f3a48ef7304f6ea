package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/spool"
)

// The queue commands (`portcullis queue list|show|flush|hold|release|delete ID`), in the
// spirit of postqueue and postsuper. They work on a spool opened with
// spool.Config{Shared: true} while the server runs; the running queue manager sees their
// changes at its next rescan (Config.Rescan). ID "ALL" selects every queued message for
// flush, hold, release and delete.

// maxShownHeader bounds what queue show reads of a message to print its header.
const maxShownHeader = 64 << 10

// messageState is how List describes a queued message.
func messageState(st spool.Status, now time.Time) string {
	switch {
	case st.Held:
		return "hold"
	case st.NextAttempt.After(now):
		return "deferred"
	default:
		return "active"
	}
}

// queueList writes one line per queued message (id, size, arrival, state, sender, recipients
// left) and a total, like mailq.
func queueList(sp *spool.Spool, w io.Writer) error {
	ids, err := sp.List()
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tARRIVAL\tSTATE\tSENDER\tRECIPIENTS")
	n := 0
	for _, id := range ids {
		env, err := sp.Envelope(id)
		if errors.Is(err, spool.ErrNotFound) {
			continue // delivered meanwhile
		}
		if err != nil {
			fmt.Fprintf(tw, "%s\t?\t?\terror\t%v\t\n", id, err)
			continue
		}
		st, err := sp.Status(id)
		if err != nil {
			return err
		}
		from := env.From
		if from == "" {
			from = "<>"
		}
		rem := st.Remaining(env)
		state := messageState(st, now)
		if state == "deferred" {
			state += " until " + st.NextAttempt.Local().Format("Jan 2 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", id, env.Size, env.ReceivedAt.Local().Format("Jan 2 15:04:05"), state, from, strings.Join(rem, " "))
		n++
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "-- %d message(s) in the queue\n", n)
	return err
}

// queueShow writes a message's envelope, the state of each recipient, its status history and
// its header.
func queueShow(sp *spool.Spool, w io.Writer, id string) error {
	env, msg, err := sp.Open(id)
	if err != nil {
		return err
	}
	defer msg.Close()
	st, err := sp.Status(id)
	if err != nil {
		return err
	}
	recs, err := sp.Records(id)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	p := func(k string, v any) { fmt.Fprintf(bw, "%-12s %v\n", k+":", v) }
	p("id", env.ID)
	p("state", messageState(st, time.Now()))
	p("size", env.Size)
	p("arrival", env.ReceivedAt.Format(time.RFC3339))
	from := env.From
	if from == "" {
		from = "<>"
	}
	p("sender", from)
	if env.ClientIP != "" {
		p("client", fmt.Sprintf("%s (helo %s) via %s", env.ClientIP, env.HELO, env.Listener))
	}
	if env.AuthUser != "" {
		p("auth user", env.AuthUser)
	}
	if env.Quarantine {
		p("quarantine", true)
	}
	if st.Attempts > 0 {
		p("attempts", st.Attempts)
		p("next try", st.NextAttempt.Format(time.RFC3339))
	}
	for _, r := range env.To {
		rs := st.Rcpts[r]
		state := string(rs.State)
		if state == "" {
			state = "pending"
		}
		line := r + " " + state
		if rs.Reply != "" {
			line += ": " + rs.Reply
		}
		p("recipient", line)
	}
	if len(recs) > 0 {
		fmt.Fprintln(bw, "\nhistory:")
		for _, r := range recs {
			fmt.Fprintf(bw, "  %s %s", r.Time.Format(time.RFC3339), r.Op)
			if r.Rcpt != "" {
				fmt.Fprintf(bw, " %s %s", r.Rcpt, r.State)
			}
			if !r.Next.IsZero() {
				fmt.Fprintf(bw, " next %s", r.Next.Format(time.RFC3339))
			}
			if r.Reply != "" {
				fmt.Fprintf(bw, " %q", r.Reply)
			}
			fmt.Fprintln(bw)
		}
	}
	fmt.Fprintln(bw, "\nheader:")
	raw, err := io.ReadAll(io.LimitReader(msg, maxShownHeader))
	if err != nil {
		return err
	}
	h, _, _ := policy.ParseHeader(raw)
	if err := textproto.WriteHeader(bw, h); err != nil {
		return err
	}
	return bw.Flush()
}

// queueFlush makes a deferred message (or ALL) due now.
func queueFlush(sp *spool.Spool, w io.Writer, id string) error {
	return queueEach(sp, w, id, "flushed", sp.Flush)
}

// queueHold puts a message (or ALL) on hold.
func queueHold(sp *spool.Spool, w io.Writer, id string) error {
	return queueEach(sp, w, id, "held", sp.Hold)
}

// queueRelease takes a message (or ALL) off hold.
func queueRelease(sp *spool.Spool, w io.Writer, id string) error {
	return queueEach(sp, w, id, "released", func(id string) error {
		st, err := sp.Status(id)
		if err != nil || !st.Held {
			return err
		}
		return sp.Release(id)
	})
}

// queueDelete removes a message (or ALL) from the queue without delivering or bouncing it.
func queueDelete(sp *spool.Spool, w io.Writer, id string) error {
	return queueEach(sp, w, id, "deleted", sp.Delete)
}

func queueEach(sp *spool.Spool, w io.Writer, id, done string, fn func(string) error) error {
	ids := []string{id}
	if id == "ALL" {
		var err error
		if ids, err = sp.List(); err != nil {
			return err
		}
	} else if !spool.ValidID(id) {
		return fmt.Errorf("%w: %q", spool.ErrBadID, id)
	}
	n := 0
	for _, id := range ids {
		if err := fn(id); err != nil {
			if len(ids) > 1 && errors.Is(err, spool.ErrNotFound) {
				continue // delivered meanwhile
			}
			return err
		}
		n++
	}
	_, err := fmt.Fprintf(w, "%s: %d message(s)\n", done, n)
	return err
}
