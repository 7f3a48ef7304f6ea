package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// portcullis report: pflogsumm's summary, computed from the decision log. Its counts
// follow pflogsumm's reading of the lines the Postfix-format log (log.postfix_file)
// has for the same traffic, so that pflogsumm run on that log agrees with it:
// received counts queued messages (quarantined ones included, as Postfix's held mail);
// delivered and bounced count recipients; deferred counts messages deferred at least
// once (and deferrals every deferred attempt); rejected counts refusals — one per
// recipient at RCPT, one per message at DATA, one per connection at CONNECT, HELO and
// MAIL, temporary ones included; bytes, senders and sending domains count the messages
// that went to the active queue (not the held ones); recipients and their domains the
// delivered ones. Mail an LMTP listener delivered within the transaction is not queue
// traffic and not counted. Times are UTC.

func reportCmd(g *globalFlags) *cobra.Command {
	var since, until string
	var asJSON bool
	var top int
	c := &cobra.Command{
		Use:   "report",
		Short: "Summarise the decision log as pflogsumm does: totals, per day and hour, top senders, rejects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			if cfg.Stats.Disable {
				return fmt.Errorf("the decision log is disabled (stats.disable)")
			}
			var f decisionlog.Filter
			if f.Since, err = parseWhen(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if f.Until, err = parseWhen(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			scfg := cfg.Stats.Config
			scfg.Retention = -1 // a report never prunes
			l, err := decisionlog.Open(cmd.Context(), scfg, decisionlog.Deps{})
			if err != nil {
				return err
			}
			defer l.Close()
			rep, err := buildReport(cmd.Context(), l, f, top)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.print(cmd.OutOrStdout())
			return nil
		},
	}
	c.Flags().StringVar(&since, "since", "", "first moment: 2026-05-04, 2026-05-04T10:00:00Z, or a duration ago (24h)")
	c.Flags().StringVar(&until, "until", "", "end (excluded), in the same forms")
	c.Flags().BoolVar(&asJSON, "json", false, "write JSON")
	c.Flags().IntVar(&top, "top", 10, "entries in each top list")
	return c
}

// parseWhen reads a date, an RFC 3339 time or a duration before now.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is no date (2006-01-02), time (RFC 3339) or duration", s)
}

// Report is what portcullis report prints.
type Report struct {
	Since  time.Time      `json:"since,omitzero"`
	Until  time.Time      `json:"until,omitzero"`
	Totals Totals         `json:"totals"`
	Days   []TrafficRow   `json:"per_day"`
	Hours  [24]TrafficRow `json:"per_hour"`

	TopSendersByCount    []Entry `json:"top_senders_by_count"`
	TopSendersBySize     []Entry `json:"top_senders_by_size"`
	TopRecipientsByCount []Entry `json:"top_recipients_by_count"`
	TopRecipientsBySize  []Entry `json:"top_recipients_by_size"`
	SendingDomains       []Entry `json:"sending_domains"`
	RecipientDomains     []Entry `json:"recipient_domains"`

	Connections Connections `json:"connections"`

	RejectsByCategory []Entry `json:"rejects_by_category"`
	RejectsByRule     []Entry `json:"rejects_by_rule"`
	RejectsByReply    []Entry `json:"rejects_by_reply"`
	Deferrals         []Entry `json:"deferrals"`
	Bounces           []Entry `json:"bounces"`
}

// Totals are pflogsumm's grand totals.
type Totals struct {
	Received         int64 `json:"received"`
	Delivered        int64 `json:"delivered"`
	Forwarded        int64 `json:"forwarded"`
	Deferred         int64 `json:"deferred"`
	Deferrals        int64 `json:"deferrals"`
	Bounced          int64 `json:"bounced"`
	Rejected         int64 `json:"rejected"`
	RejectedPercent  int64 `json:"rejected_percent"`
	Quarantined      int64 `json:"quarantined"` // pflogsumm's "held"
	Discarded        int64 `json:"discarded"`
	DiscardedPercent int64 `json:"discarded_percent"`
	BytesReceived    int64 `json:"bytes_received"`
	BytesDelivered   int64 `json:"bytes_delivered"`
	Senders          int64 `json:"senders"`
	SendingDomains   int64 `json:"sending_domains"`
	Recipients       int64 `json:"recipients"`
	RecipientDomains int64 `json:"recipient_domains"`
}

// TrafficRow is one day or hour of pflogsumm's traffic summaries.
type TrafficRow struct {
	Start     string `json:"start"` // 2026-05-04, or 13:00 for an hour
	Received  int64  `json:"received"`
	Delivered int64  `json:"delivered"`
	Deferred  int64  `json:"deferred"` // deferrals
	Bounced   int64  `json:"bounced"`
	Rejected  int64  `json:"rejected"` // as pflogsumm's column: rejects, discards and holds
}

// Entry is one line of a top list.
type Entry struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Bytes int64  `json:"bytes,omitempty"`
}

// Connections summarise the SMTP sessions seen in the log.
type Connections struct {
	Sessions      int64   `json:"sessions"`
	RefusedEarly  int64   `json:"refused_before_rcpt"` // connection, HELO and MAIL refusals
	ByListener    []Entry `json:"by_listener"`
	TopClients    []Entry `json:"top_clients"`
	TopRefusedIPs []Entry `json:"top_refused_clients"`
}

type counter map[string]*Entry

func (c counter) add(k string, bytes int64) {
	e := c[k]
	if e == nil {
		e = &Entry{Key: k}
		c[k] = e
	}
	e.Count++
	e.Bytes += bytes
}

// top returns the n largest entries by count (or bytes), ties by key.
func (c counter) top(n int, bySize bool) []Entry {
	out := make([]Entry, 0, len(c))
	for _, e := range c {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if bySize && a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Key < b.Key
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// buildReport reads the records f selects (every one: the report is the admin's) and
// counts them.
func buildReport(ctx context.Context, l *decisionlog.Log, f decisionlog.Filter, top int) (*Report, error) {
	rep := &Report{Since: f.Since, Until: f.Until}
	for h := range rep.Hours {
		rep.Hours[h].Start = fmt.Sprintf("%02d:00", h)
	}
	days := map[string]*TrafficRow{}
	day := func(t time.Time) *TrafficRow {
		k := t.UTC().Format("2006-01-02")
		if days[k] == nil {
			days[k] = &TrafficRow{Start: k}
		}
		return days[k]
	}
	hour := func(t time.Time) *TrafficRow { return &rep.Hours[t.UTC().Hour()] }

	received := map[string]bool{}     // queue ids
	deferredMsgs := map[string]bool{} // queue ids deferred at least once
	events := map[string]bool{}       // data-stage refusals and discards, by transaction
	sessions, refusedSessions := counter{}, counter{}
	listeners, clients := counter{}, counter{}
	senders, sendersSize, sdoms := counter{}, counter{}, counter{}
	rcpts, rdoms := counter{}, counter{}
	byCat, byRule, byReply, defers, bounces := counter{}, counter{}, counter{}, counter{}, counter{}

	f.Scope = decisionlog.Scope{All: true}
	f.Sort, f.Limit = decisionlog.SortOldest, decisionlog.MaxLimit
	for {
		page, next, err := l.Query(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if r.QueueID == "" && r.Relay != "" {
				continue // delivered by an LMTP listener within the transaction: no queue traffic
			}
			if _, seen := sessions[r.Session]; !seen {
				listeners.add(r.Listener, 0)
				clients.add(clientName(r), 0)
			}
			sessions.add(r.Session, 0)
			switch r.Verdict {
			case decisionlog.VerdictAccept, decisionlog.VerdictQuarantine:
				if r.QueueID == "" {
					continue
				}
				held := r.Verdict == decisionlog.VerdictQuarantine
				if !received[r.QueueID] {
					received[r.QueueID] = true
					rep.Totals.Received++
					day(r.Time).Received++
					hour(r.Time).Received++
					if held {
						rep.Totals.Quarantined++
						day(r.Time).Rejected++ // pflogsumm's per-day "rejected" counts holds too
						hour(r.Time).Rejected++
					} else {
						sender := r.Sender
						dom := domainOf(sender)
						if sender == "" {
							sender = "from=<>"
							dom = gimmeDomain(r.ClientName, r.ClientIP)
						}
						rep.Totals.BytesReceived += r.Size
						senders.add(sender, r.Size)
						sendersSize.add(sender, r.Size)
						sdoms.add(dom, r.Size)
					}
				}
				if r.Deferrals > 0 {
					deferredMsgs[r.QueueID] = true
					rep.Totals.Deferrals += int64(r.Deferrals)
					day(r.Time).Deferred += int64(r.Deferrals)
					hour(r.Time).Deferred += int64(r.Deferrals)
					defers.add(reasonOf(r.OutcomeReason), int64(r.Deferrals))
				}
				switch r.Outcome {
				case decisionlog.OutcomeDelivered:
					rep.Totals.Delivered++
					day(r.OutcomeTime).Delivered++
					hour(r.OutcomeTime).Delivered++
					size := r.Size
					if held {
						size = 0 // pflogsumm knows no size of a held message
					}
					rep.Totals.BytesDelivered += size
					rcpts.add(r.Recipient, size)
					rdoms.add(domainOf(r.Recipient), size)
				case decisionlog.OutcomeBounced:
					rep.Totals.Bounced++
					day(r.OutcomeTime).Bounced++
					hour(r.OutcomeTime).Bounced++
					bounces.add(reasonOf(r.OutcomeReason), 0)
				}
			case decisionlog.VerdictDiscard:
				if !events[r.Txn] {
					events[r.Txn] = true
					rep.Totals.Discarded++
					day(r.Time).Rejected++ // pflogsumm's per-day "rejected" counts discards too
					hour(r.Time).Rejected++
				}
			case decisionlog.VerdictReject, decisionlog.VerdictTempfail:
				if r.Txn != "" { // refused at DATA: once per message
					if events[r.Txn] {
						continue
					}
					events[r.Txn] = true
				}
				if r.Recipient == "" {
					rep.Connections.RefusedEarly++
					refusedSessions.add(clientName(r), 0)
				}
				rep.Totals.Rejected++
				day(r.Time).Rejected++
				hour(r.Time).Rejected++
				byCat.add(r.Category, 0)
				byRule.add(r.Rule, 0)
				byReply.add(r.Reply, 0)
			}
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if total := rep.Totals.Delivered + rep.Totals.Rejected + rep.Totals.Discarded; total > 0 {
		rep.Totals.RejectedPercent = rep.Totals.Rejected * 100 / total
		rep.Totals.DiscardedPercent = rep.Totals.Discarded * 100 / total
	}
	rep.Totals.Deferred = int64(len(deferredMsgs))
	rep.Totals.Senders, rep.Totals.SendingDomains = int64(len(senders)), int64(len(sdoms))
	rep.Totals.Recipients, rep.Totals.RecipientDomains = int64(len(rcpts)), int64(len(rdoms))
	keys := make([]string, 0, len(days))
	for k := range days {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rep.Days = append(rep.Days, *days[k])
	}
	rep.TopSendersByCount, rep.TopSendersBySize = senders.top(top, false), sendersSize.top(top, true)
	rep.TopRecipientsByCount, rep.TopRecipientsBySize = rcpts.top(top, false), rcpts.top(top, true)
	rep.SendingDomains, rep.RecipientDomains = sdoms.top(top, false), rdoms.top(top, false)
	rep.Connections.Sessions = int64(len(sessions))
	rep.Connections.ByListener = listeners.top(0, false)
	rep.Connections.TopClients = clients.top(top, false)
	rep.Connections.TopRefusedIPs = refusedSessions.top(top, false)
	rep.RejectsByCategory, rep.RejectsByRule, rep.RejectsByReply = byCat.top(top, false), byRule.top(top, false), byReply.top(top, false)
	rep.Deferrals, rep.Bounces = defers.top(top, false), bounces.top(top, false)
	return rep, nil
}

func clientName(r decisionlog.Record) string {
	ip := ""
	if r.ClientIP.IsValid() {
		ip = r.ClientIP.String()
	}
	name := r.ClientName
	if name == "" {
		name = "unknown"
	}
	return name + "[" + ip + "]"
}

func domainOf(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return strings.ToLower(a[i+1:])
	}
	return a
}

// gimmeDomain is pflogsumm's name for a client without a sender domain: the last two
// labels of its name (three when the last two look like a country's second level, as
// co.uk), or its address when it has no name.
func gimmeDomain(name string, ip netip.Addr) string {
	if name == "" || name == "unknown" {
		if !ip.IsValid() {
			return "127.0.0.1"
		}
		return ip.String()
	}
	if m := gimmeRe.FindStringSubmatch(name); m != nil {
		return strings.ToLower(m[2] + "." + m[3])
	}
	return name
}

var gimmeRe = regexp.MustCompile(`^(.*)\.([^.]+)\.([^.]{3}|[^.]{2,3}\.[^.]{2})$`)

// reasonOf shortens a remote reply for the deferral and bounce lists.
func reasonOf(s string) string {
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func (rep *Report) print(w io.Writer) {
	t := rep.Totals
	fmt.Fprintf(w, "Grand Totals\n------------\nmessages\n\n")
	fmt.Fprintf(w, " %7d  received\n %7d  delivered\n %7d  forwarded\n %7d  deferred", t.Received, t.Delivered, t.Forwarded, t.Deferred)
	if t.Deferrals > 0 {
		fmt.Fprintf(w, "  (%d deferrals)", t.Deferrals)
	}
	fmt.Fprintf(w, "\n %7d  bounced\n %7d  rejected (%d%%)\n %7d  quarantined\n %7d  discarded (%d%%)\n\n",
		t.Bounced, t.Rejected, t.RejectedPercent, t.Quarantined, t.Discarded, t.DiscardedPercent)
	fmt.Fprintf(w, " %7d  bytes received\n %7d  bytes delivered\n %7d  senders\n %7d  sending hosts/domains\n %7d  recipients\n %7d  recipient hosts/domains\n",
		t.BytesReceived, t.BytesDelivered, t.Senders, t.SendingDomains, t.Recipients, t.RecipientDomains)
	traffic := func(title, col string, rows []TrafficRow) {
		fmt.Fprintf(w, "\n%s\n%s\n    %-10s  received  delivered   deferred    bounced   rejected\n", title, strings.Repeat("-", len(title)), col)
		for _, r := range rows {
			fmt.Fprintf(w, "    %-10s  %8d  %9d  %9d  %9d  %9d\n", r.Start, r.Received, r.Delivered, r.Deferred, r.Bounced, r.Rejected)
		}
	}
	traffic("Per-Day Traffic Summary", "date", rep.Days)
	traffic("Per-Hour Traffic Summary", "time", rep.Hours[:])
	list := func(title string, es []Entry, bytes bool) {
		fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("-", len(title)))
		if len(es) == 0 {
			fmt.Fprintln(w, " none")
		}
		for _, e := range es {
			if bytes {
				fmt.Fprintf(w, " %7d %10d  %s\n", e.Count, e.Bytes, e.Key)
			} else {
				fmt.Fprintf(w, " %7d  %s\n", e.Count, e.Key)
			}
		}
	}
	list("Senders by message count", rep.TopSendersByCount, false)
	list("Senders by message size", rep.TopSendersBySize, true)
	list("Recipients by message count", rep.TopRecipientsByCount, false)
	list("Recipients by message size", rep.TopRecipientsBySize, true)
	list("Sending domains", rep.SendingDomains, true)
	list("Recipient domains", rep.RecipientDomains, true)
	c := rep.Connections
	fmt.Fprintf(w, "\nConnections\n-----------\n %7d  sessions\n %7d  refused before RCPT\n", c.Sessions, c.RefusedEarly)
	list("Sessions by listener", c.ByListener, false)
	list("Top clients", c.TopClients, false)
	list("Top refused clients", c.TopRefusedIPs, false)
	list("Rejects by category", rep.RejectsByCategory, false)
	list("Rejects by rule", rep.RejectsByRule, false)
	list("Rejects by reply", rep.RejectsByReply, false)
	list("Deferrals", rep.Deferrals, false)
	list("Bounces", rep.Bounces, false)
}
