package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis-mail/portcullis/quarantine"
	"github.com/portcullis-mail/portcullis/web/internal/svgchart"
)

type quarantineList struct {
	Items    []quarantine.Item
	All      bool // the admin's view of every recipient
	Query    string
	Sort     string // "", "oldest", "score", "from"
	Page     int
	Pages    int
	Prev     string
	Next     string
	Lifetime string
	Total    int
}

const perPage = 50

// matches is the list's search: words that must all appear in the sender, recipient,
// From:, Subject or Message-ID.
func matches(it quarantine.Item, q string) bool {
	hay := strings.ToLower(strings.Join([]string{it.From, it.Rcpt, it.HeaderFrom, it.Subject, it.MessageID, it.ClientIP}, "\x00"))
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

func (s *Server) quarantineList(all bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		if s.deps.Quarantine == nil {
			s.fail(w, r, sess, http.StatusNotFound, "The quarantine is not enabled.")
			return
		}
		items, err := s.deps.Quarantine.List(r.Context(), s.visible(r.Context(), sess, all))
		if err != nil {
			s.log.Error("web: listing the quarantine failed", "err", err.Error())
			s.fail(w, r, sess, http.StatusInternalServerError, "The quarantine cannot be read now.")
			return
		}
		q := strings.TrimSpace(r.URL.Query().Get("q"))
		if len(q) > 500 {
			q = q[:500]
		}
		if q != "" {
			items = slices.DeleteFunc(items, func(it quarantine.Item) bool { return !matches(it, q) })
		}
		srt := r.URL.Query().Get("sort")
		switch srt {
		case "oldest":
			slices.Reverse(items)
		case "score":
			slices.SortStableFunc(items, func(a, b quarantine.Item) int { return cmpFloat(b.Score, a.Score) })
		case "from":
			slices.SortStableFunc(items, func(a, b quarantine.Item) int { return strings.Compare(a.From, b.From) })
		default:
			srt = ""
		}
		d := quarantineList{All: all, Query: q, Sort: srt, Total: len(items), Lifetime: days(s.deps.Quarantine.Lifetime())}
		d.Pages = max((len(items)+perPage-1)/perPage, 1)
		fmt.Sscan(r.URL.Query().Get("page"), &d.Page)
		d.Page = min(max(d.Page, 1), d.Pages)
		lo := (d.Page - 1) * perPage
		d.Items = items[lo:min(lo+perPage, len(items))]
		link := func(p int) string {
			return r.URL.Path + "?" + url.Values{"q": {q}, "sort": {srt}, "page": {fmt.Sprint(p)}}.Encode()
		}
		if d.Page > 1 {
			d.Prev = link(d.Page - 1)
		}
		if d.Page < d.Pages {
			d.Next = link(d.Page + 1)
		}
		title := "Quarantine"
		if all {
			title = "Quarantine (all users)"
		}
		s.render(w, http.StatusOK, "quarantine", page{Title: title, User: sess.user, Admin: sess.admin, CSRF: sess.csrf,
			Flash: s.sessions.takeFlash(r.Context(), sess), Data: d})
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func days(d time.Duration) string {
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

type itemPage struct {
	Item   quarantine.Item
	Source string
	Cut    bool
	Kind   string // the sender's entry on the user's list, if any
}

func (s *Server) quarantineItem(w http.ResponseWriter, r *http.Request, sess *session) {
	s.showItem(w, r, sess, r.URL.Query().Get("id"), r.URL.Query().Get("rcpt"), "")
}

// showItem shows one item, after checking that sess may see it. A missing item and one
// of another user get the same answer, so ids cannot be probed.
func (s *Server) showItem(w http.ResponseWriter, r *http.Request, sess *session, id, rcpt, flash string) {
	if s.deps.Quarantine == nil || !s.mayAct(r.Context(), sess, rcpt) {
		s.fail(w, r, sess, http.StatusNotFound, "No such message in your quarantine.")
		return
	}
	it, err := s.deps.Quarantine.Get(id, rcpt)
	if err != nil {
		if !errors.Is(err, quarantine.ErrNotFound) {
			s.log.Error("web: reading a quarantined message failed", "id", id, "err", err.Error())
		}
		s.fail(w, r, sess, http.StatusNotFound, "No such message in your quarantine.")
		return
	}
	d := itemPage{Item: it}
	if msg, err := s.deps.Quarantine.Message(id); err == nil {
		buf, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(msg, 0, msg.Size()), maxSource))
		msg.Close()
		d.Cut = msg.Size() > maxSource
		d.Source = strings.ToValidUTF8(string(buf), string(utf8.RuneError))
	}
	s.render(w, http.StatusOK, "item", page{Title: "Quarantined message", User: sess.user, Admin: sess.admin, CSRF: sess.csrf, Flash: flash, Data: d})
}

// quarantineAction is the item's form: release, delete, allow or block the sender.
func (s *Server) quarantineAction(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	id, rcpt, action := f.Get("id"), f.Get("rcpt"), f.Get("action")
	if s.deps.Quarantine == nil || !s.mayAct(r.Context(), sess, rcpt) {
		s.fail(w, r, sess, http.StatusNotFound, "No such message in your quarantine.")
		return
	}
	it, err := s.deps.Quarantine.Get(id, rcpt)
	if err != nil {
		s.fail(w, r, sess, http.StatusNotFound, "No such message in your quarantine (released or deleted already?).")
		return
	}
	ctx := r.Context()
	var done string
	switch action {
	case "release":
		if _, err = s.deps.Quarantine.Release(ctx, id, rcpt, sess.user); err == nil {
			done = "Released: the message is on its way to " + rcpt + "."
		}
	case "delete":
		if err = s.deps.Quarantine.Delete(id, rcpt, sess.user); err == nil {
			done = "Deleted."
		}
	case "allow", "block":
		if s.deps.Lists == nil {
			err = errors.New("sender lists are not enabled")
			break
		}
		if it.From == "" {
			s.fail(w, r, sess, http.StatusBadRequest, "The message has no sender to list (null sender).")
			return
		}
		// The list is the recipient's: the user's own, or, for an admin acting on another
		// user's message, the lists of the users the recipient delivers to (an alias's
		// members, an address with an extension's user), which the rules read.
		owners := []string{sess.user}
		if sess.admin {
			if ok, _ := s.deps.Owner.Owns(ctx, sess.user, rcpt); !ok {
				if owners, err = s.listOwners(ctx, rcpt); err != nil {
					break
				}
			}
		}
		kind := quarantine.Allow
		if action == "block" {
			kind = quarantine.Block
		}
		for _, o := range owners {
			if err = s.deps.Lists.Set(ctx, o, it.From, kind); err != nil {
				break
			}
		}
		if err == nil {
			done = fmt.Sprintf("%s is now always %sed for %s.", it.From, action, strings.Join(owners, ", "))
			if action == "allow" {
				_, err = s.deps.Quarantine.Release(ctx, id, rcpt, sess.user)
				done += " The message is released."
			} else {
				err = s.deps.Quarantine.Delete(id, rcpt, sess.user)
				done += " The message is deleted."
			}
		}
	default:
		s.fail(w, r, sess, http.StatusBadRequest, "Unknown action.")
		return
	}
	if err != nil {
		if errors.Is(err, quarantine.ErrNotFound) {
			s.fail(w, r, sess, http.StatusNotFound, "That message is no longer in the quarantine.")
			return
		}
		// The error names spool files and ids: the log has it, the user gets no internals.
		s.log.Error("web: quarantine action failed", "action", action, "id", id, "rcpt", rcpt, "user", sess.user, "err", err.Error())
		s.fail(w, r, sess, http.StatusInternalServerError, "That did not work; the error is logged for the administrator.")
		return
	}
	back := "/quarantine"
	if f.Get("from") == "admin" && sess.admin {
		back = "/admin/quarantine"
	}
	s.sessions.setFlash(r.Context(), sess.id, done)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// listOwners returns the users whose lists the rules read for rcpt.
func (s *Server) listOwners(ctx context.Context, rcpt string) ([]string, error) {
	if s.deps.ListOwners == nil {
		return []string{strings.ToLower(rcpt)}, nil
	}
	owners, err := s.deps.ListOwners.ListOwners(ctx, rcpt)
	if err == nil && len(owners) == 0 {
		err = fmt.Errorf("%s delivers to no user", rcpt)
	}
	return owners, err
}

type sendersPage struct {
	Entries []quarantine.Entry
	Digest  string
}

func (s *Server) senders(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.deps.Lists == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Sender lists are not enabled.")
		return
	}
	entries, err1 := s.deps.Lists.Entries(r.Context(), sess.user)
	digest, err2 := s.deps.Lists.Digest(r.Context(), sess.user)
	if err := errors.Join(err1, err2); err != nil {
		s.log.Error("web: reading sender lists failed", "user", sess.user, "err", err.Error())
		s.fail(w, r, sess, http.StatusInternalServerError, "Your lists cannot be read now.")
		return
	}
	s.render(w, http.StatusOK, "senders", page{Title: "Senders and digest", User: sess.user, Admin: sess.admin, CSRF: sess.csrf,
		Flash: s.sessions.takeFlash(r.Context(), sess), Data: sendersPage{Entries: entries, Digest: digest}})
}

// sendersUpdate adds or removes a list entry or sets the digest, always on the session's
// own user: the form names no user.
func (s *Server) sendersUpdate(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.deps.Lists == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Sender lists are not enabled.")
		return
	}
	f, ctx := r.PostForm, r.Context()
	var err error
	var done string
	switch f.Get("action") {
	case "allow", "block":
		kind := quarantine.Allow
		if f.Get("action") == "block" {
			kind = quarantine.Block
		}
		err = s.deps.Lists.Set(ctx, sess.user, f.Get("sender"), kind)
		done = "Added."
	case "remove":
		err = s.deps.Lists.Remove(ctx, sess.user, f.Get("sender"))
		done = "Removed."
	case "digest":
		err = s.deps.Lists.SetDigest(ctx, sess.user, f.Get("digest"))
		done = "Digest: " + f.Get("digest") + "."
	default:
		s.fail(w, r, sess, http.StatusBadRequest, "Unknown action.")
		return
	}
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, err.Error())
		return
	}
	s.sessions.setFlash(r.Context(), sess.id, done)
	http.Redirect(w, r, "/senders", http.StatusSeeOther)
}

type chartsPage struct {
	All    bool
	Charts []chart
}

type chart struct {
	SVG any // template.HTML
}

// quarantineCharts draws the quarantine's figures: messages per day, the score
// histogram, top senders and client networks.
func (s *Server) quarantineCharts(all bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		if s.deps.Quarantine == nil {
			s.fail(w, r, sess, http.StatusNotFound, "The quarantine is not enabled.")
			return
		}
		items, err := s.deps.Quarantine.List(r.Context(), s.visible(r.Context(), sess, all))
		if err != nil {
			s.fail(w, r, sess, http.StatusInternalServerError, "The quarantine cannot be read now.")
			return
		}
		s.render(w, http.StatusOK, "charts", page{Title: "Quarantine charts", User: sess.user, Admin: sess.admin, CSRF: sess.csrf,
			Data: chartsPage{All: all, Charts: quarantineFigures(items, s.now(), s.deps.Quarantine.Lifetime())}})
	}
}

func quarantineFigures(items []quarantine.Item, now time.Time, lifetime time.Duration) []chart {
	ndays := min(max(int(lifetime.Hours()/24), 1), 60)
	labels := make([]string, ndays)
	perDay := make([]float64, ndays)
	start := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -(ndays - 1))
	for i := range labels {
		labels[i] = start.AddDate(0, 0, i).Format("01-02")
	}
	var scoreLabels []string
	for i := 0; i < 10; i++ {
		scoreLabels = append(scoreLabels, fmt.Sprintf("%d–%d", i*2, i*2+2))
	}
	scoreLabels = append(scoreLabels, "20+")
	scores := make([]float64, len(scoreLabels))
	senders, clients := map[string]float64{}, map[string]float64{}
	for _, it := range items {
		if d := int(it.Received.UTC().Sub(start).Hours() / 24); d >= 0 && d < ndays {
			perDay[d]++
		}
		b := min(max(int(it.Score/2), 0), len(scores)-1)
		scores[b]++
		from := it.From
		if from == "" {
			from = "<>"
		}
		senders[from]++
		if it.ClientIP != "" {
			clients[it.ClientIP]++
		}
	}
	return []chart{
		{SVG: html(svgchart.Stacked(svgchart.Chart{Title: "Quarantined per day", Labels: labels, Series: []svgchart.Series{{Name: "quarantined", Values: perDay}}}))},
		{SVG: html(svgchart.Histogram("Spam score", scoreLabels, scores))},
		{SVG: html(svgchart.Top("Top senders", top(senders, 10)))},
		{SVG: html(svgchart.Top("Top clients", top(clients, 10)))},
	}
}

func top(m map[string]float64, n int) []svgchart.Item {
	out := make([]svgchart.Item, 0, len(m))
	for k, v := range m {
		out = append(out, svgchart.Item{Label: k, Value: v})
	}
	slices.SortFunc(out, func(a, b svgchart.Item) int {
		if a.Value != b.Value {
			if a.Value > b.Value {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Label, b.Label)
	})
	return out[:min(n, len(out))]
}
