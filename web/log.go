package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/web/internal/svgchart"
)

// DecisionLog is what the page reads of the decision log; *decisionlog.Log implements it.
type DecisionLog interface {
	Query(ctx context.Context, f decisionlog.Filter) ([]decisionlog.Record, decisionlog.Cursor, error)
	Get(ctx context.Context, scope decisionlog.Scope, id int64) (decisionlog.Record, error)
	BlockedByCategory(ctx context.Context, f decisionlog.Filter, b decisionlog.Bucket) ([]decisionlog.CategoryCount, error)
	Traffic(ctx context.Context, f decisionlog.Filter, b decisionlog.Bucket) ([]decisionlog.TrafficRow, error)
	ScoreHistogram(ctx context.Context, f decisionlog.Filter, width float64) ([]decisionlog.ScoreBin, error)
	Top(ctx context.Context, f decisionlog.Filter, key decisionlog.TopKey, n int, bySize bool) ([]decisionlog.TopEntry, error)
}

// Addresses lists the addresses that deliver to a user (theirs and their aliases);
// *route.Router implements it. The page asks it once per session.
type Addresses interface {
	Addresses(ctx context.Context, user string) ([]string, error)
}

// scope is what sess may see of the log: every record for an admin; for a user the
// records addressed to their addresses and aliases and those of the mail they submitted.
func (s *Server) scope(ctx context.Context, sess *session) decisionlog.Scope {
	if sess.admin {
		return decisionlog.Scope{All: true}
	}
	return decisionlog.Scope{Recipients: s.addresses(ctx, sess), AuthUser: sess.user}
}

// addresses returns the session's addresses, looked up once.
func (s *Server) addresses(ctx context.Context, sess *session) []string {
	if a := s.sessions.cachedAddrs(sess.user); a != nil {
		return a
	}
	addrs := []string{strings.ToLower(sess.user)}
	if s.deps.Addresses != nil {
		a, err := s.deps.Addresses.Addresses(ctx, sess.user)
		if err != nil {
			// Not cached: the next page tries again. The user still sees their own.
			s.log.Warn("web: looking up a user's aliases failed", "user", sess.user, "err", err.Error())
			return addrs
		}
		addrs = a
	}
	s.sessions.setAddrs(sess.user, addrs)
	return addrs
}

// logForm is the search form's values, echoed back into the form.
type logForm struct {
	Address, Client, Subject, MessageID, Verdict, Category, Rule, Policy, Since, Until, Sort string
}

var verdictChoices = []string{"", "blocked", "accept", "quarantine", "reject", "tempfail", "discard"}

var sorts = map[string]decisionlog.Sort{
	"": decisionlog.SortNewest, "oldest": decisionlog.SortOldest, "score": decisionlog.SortScoreHigh,
	"score-low": decisionlog.SortScoreLow, "size": decisionlog.SortSizeLarge, "size-small": decisionlog.SortSizeSmall,
}

// parseLogFilter turns the query string into a filter; the bounds keep a URL from making
// the database work on megabytes of conditions.
func parseLogFilter(v url.Values) (logForm, decisionlog.Filter, error) {
	get := func(k string) string {
		s := strings.TrimSpace(v.Get(k))
		if len(s) > 320 {
			s = s[:320]
		}
		return s
	}
	f := logForm{Address: get("address"), Client: get("client"), Subject: get("subject"), MessageID: get("msgid"),
		Verdict: get("verdict"), Category: get("category"), Rule: get("rule"), Policy: get("policy"),
		Since: get("since"), Until: get("until"), Sort: get("sort")}
	df := decisionlog.Filter{Address: f.Address, Client: f.Client, Subject: f.Subject, MessageID: f.MessageID,
		Rule: f.Rule, Policy: f.Policy, Cursor: decisionlog.Cursor(get("cursor")), Limit: perPage}
	switch f.Verdict {
	case "":
	case "blocked":
		df.Blocked = true
	default:
		if !slices.Contains(verdictChoices, f.Verdict) {
			return f, df, fmt.Errorf("unknown verdict %q", f.Verdict)
		}
		df.Verdicts = []string{f.Verdict}
	}
	if f.Category != "" {
		df.Categories = []string{f.Category}
	}
	srt, ok := sorts[f.Sort]
	if !ok {
		return f, df, fmt.Errorf("unknown order %q", f.Sort)
	}
	df.Sort = srt
	for _, d := range []struct {
		s   string
		t   *time.Time
		end bool
	}{{f.Since, &df.Since, false}, {f.Until, &df.Until, true}} {
		if d.s == "" {
			continue
		}
		t, err := time.Parse("2006-01-02", d.s)
		if err != nil {
			if t, err = time.Parse("2006-01-02T15:04", d.s); err != nil {
				return f, df, fmt.Errorf("date %q: want YYYY-MM-DD", d.s)
			}
		} else if d.end {
			t = t.AddDate(0, 0, 1) // "until" a day includes that day
		}
		*d.t = t
	}
	return f, df, nil
}

type logPage struct {
	Form     logForm
	Verdicts []string
	Records  []decisionlog.Record
	Next     string
	First    string
	All      bool
}

func (s *Server) logList(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.deps.Log == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The decision log is not enabled.")
		return
	}
	form, f, err := parseLogFilter(r.URL.Query())
	p := page{Title: "Decisions", User: sess.user, Admin: sess.admin, CSRF: sess.csrf}
	d := logPage{Form: form, Verdicts: verdictChoices, All: sess.admin}
	if err != nil {
		p.Error, p.Data = err.Error(), d
		s.render(w, http.StatusBadRequest, "log", p)
		return
	}
	f.Scope = s.scope(r.Context(), sess)
	recs, next, err := s.deps.Log.Query(r.Context(), f)
	if err != nil {
		if errors.Is(err, decisionlog.ErrBadFilter) {
			p.Error, p.Data = strings.TrimPrefix(err.Error(), "decisionlog: bad filter: "), d
			s.render(w, http.StatusBadRequest, "log", p)
			return
		}
		s.log.Error("web: decision log query failed", "err", err.Error())
		s.fail(w, r, sess, http.StatusInternalServerError, "The decision log cannot be read now.")
		return
	}
	d.Records = recs
	q := r.URL.Query()
	if next != "" {
		q.Set("cursor", string(next))
		d.Next = "/log?" + q.Encode()
	}
	if r.URL.Query().Get("cursor") != "" {
		q.Del("cursor")
		d.First = "/log?" + q.Encode()
	}
	p.Data = d
	s.render(w, http.StatusOK, "log", p)
}

func (s *Server) logRecord(w http.ResponseWriter, r *http.Request, sess *session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if s.deps.Log == nil || err != nil || id <= 0 {
		s.fail(w, r, sess, http.StatusNotFound, "No such record.")
		return
	}
	rec, err := s.deps.Log.Get(r.Context(), s.scope(r.Context(), sess), id)
	if err != nil {
		// Another user's record and a missing one get the same answer.
		if !errors.Is(err, decisionlog.ErrNotFound) {
			s.log.Error("web: decision log read failed", "id", id, "err", err.Error())
		}
		s.fail(w, r, sess, http.StatusNotFound, "No such record.")
		return
	}
	s.render(w, http.StatusOK, "record", page{Title: "Decision", User: sess.user, Admin: sess.admin, CSRF: sess.csrf, Data: rec})
}

// logCharts draws the log's figures for the session's scope: blocked mail per category
// per day and per week (the "policies' efficiency" figure), traffic per hour and per day,
// the score histogram, and the top blocked senders, clients and sender domains.
func (s *Server) logCharts(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.deps.Log == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The decision log is not enabled.")
		return
	}
	charts, err := s.cachedFigures(r.Context(), s.scope(r.Context(), sess))
	if err != nil {
		s.log.Error("web: decision log charts failed", "err", err.Error())
		s.fail(w, r, sess, http.StatusInternalServerError, "The decision log cannot be read now.")
		return
	}
	s.render(w, http.StatusOK, "charts", page{Title: "Charts", User: sess.user, Admin: sess.admin, CSRF: sess.csrf,
		Data: chartsPage{All: sess.admin, Charts: charts}})
}

// chartTTL is how long drawn charts are reused: aggregating a large log takes seconds
// (BenchmarkCharts), and a day's figures hardly move in a few minutes.
const chartTTL = 5 * time.Minute

type chartEntry struct {
	at     time.Time
	charts []chart
}

// cachedFigures returns the scope's charts, drawn at most chartTTL ago. Admins share one
// entry; the cache holds at most maxSessions entries.
func (s *Server) cachedFigures(ctx context.Context, scope decisionlog.Scope) ([]chart, error) {
	key := fmt.Sprint(scope.All, "\x00", scope.AuthUser, "\x00", strings.Join(scope.Recipients, ","))
	now := s.now()
	s.chartMu.Lock()
	e, ok := s.chartCache[key]
	s.chartMu.Unlock()
	if ok && now.Sub(e.at) < chartTTL {
		return e.charts, nil
	}
	charts, err := s.logFigures(ctx, scope, now)
	if err != nil {
		return nil, err
	}
	s.chartMu.Lock()
	if s.chartCache == nil || len(s.chartCache) >= s.cfg.MaxSessions {
		s.chartCache = map[string]chartEntry{}
	}
	s.chartCache[key] = chartEntry{at: now, charts: charts}
	s.chartMu.Unlock()
	return charts, nil
}

func (s *Server) logFigures(ctx context.Context, scope decisionlog.Scope, now time.Time) ([]chart, error) {
	l := s.deps.Log
	day := now.UTC().Truncate(24 * time.Hour)
	hour := now.UTC().Truncate(time.Hour)
	// Weeks start on Monday, as the log's buckets do.
	week := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	since := day.AddDate(0, 0, -29)
	// Each figure is one aggregation; they run at once (the log's readers are concurrent),
	// and are placed in this order.
	var tasks []func() (chart, error)
	for _, c := range []struct {
		title  string
		bucket decisionlog.Bucket
		start  time.Time
		n      int
		step   func(time.Time, int) time.Time
		format string
	}{
		{"Blocked per day, by category", decisionlog.Day, day.AddDate(0, 0, -29), 30, func(t time.Time, i int) time.Time { return t.AddDate(0, 0, i) }, "01-02"},
		{"Blocked per week, by category", decisionlog.Week, week.AddDate(0, 0, -7*11), 12, func(t time.Time, i int) time.Time { return t.AddDate(0, 0, 7*i) }, "01-02"},
	} {
		tasks = append(tasks, func() (chart, error) {
			rows, err := l.BlockedByCategory(ctx, decisionlog.Filter{Scope: scope, Since: c.start}, c.bucket)
			if err != nil {
				return chart{}, err
			}
			labels, index := buckets(c.start, c.n, c.step, c.format)
			totals := map[string]float64{}
			for _, r := range rows {
				totals[r.Category] += float64(r.Count)
			}
			cats := topKeys(totals, 9)
			series := make([]svgchart.Series, len(cats))
			pos := map[string]int{}
			for i, k := range cats {
				series[i] = svgchart.Series{Name: k, Values: make([]float64, c.n)}
				pos[k] = i
			}
			for _, r := range rows {
				i, ok := index[r.Start.UTC().Format(time.DateOnly)]
				if !ok {
					continue
				}
				k := r.Category
				if _, ok := pos[k]; !ok {
					k = "other"
				}
				series[pos[k]].Values[i] += float64(r.Count)
			}
			return chart{SVG: html(svgchart.Stacked(svgchart.Chart{Title: c.title, Labels: labels, Series: series}))}, nil
		})
	}
	for _, c := range []struct {
		title  string
		bucket decisionlog.Bucket
		start  time.Time
		n      int
		step   func(time.Time, int) time.Time
		format string
		key    string
	}{
		{"Traffic per hour (48 h)", decisionlog.Hour, hour.Add(-47 * time.Hour), 48, func(t time.Time, i int) time.Time { return t.Add(time.Duration(i) * time.Hour) }, "15h", time.DateTime[:13]},
		{"Traffic per day (30 days)", decisionlog.Day, day.AddDate(0, 0, -29), 30, func(t time.Time, i int) time.Time { return t.AddDate(0, 0, i) }, "01-02", time.DateOnly},
	} {
		tasks = append(tasks, func() (chart, error) {
			rows, err := l.Traffic(ctx, decisionlog.Filter{Scope: scope, Since: c.start}, c.bucket)
			if err != nil {
				return chart{}, err
			}
			labels := make([]string, c.n)
			index := map[string]int{}
			for i := range c.n {
				t := c.step(c.start, i)
				labels[i] = t.Format(c.format)
				index[t.Format(c.key)] = i
			}
			names := []string{"received", "accepted", "rejected", "quarantined", "delivered", "deferred", "bounced"}
			series := make([]svgchart.Series, len(names))
			for i, n := range names {
				series[i] = svgchart.Series{Name: n, Values: make([]float64, c.n)}
			}
			for _, r := range rows {
				i, ok := index[r.Start.UTC().Format(c.key)]
				if !ok {
					continue
				}
				for j, v := range []int64{r.Received, r.Accepted, r.Rejected, r.Quarantined, r.Delivered, r.Deferred, r.Bounced} {
					series[j].Values[i] += float64(v)
				}
			}
			return chart{SVG: html(svgchart.Lines(svgchart.Chart{Title: c.title, Labels: labels, Series: series}))}, nil
		})
	}
	tasks = append(tasks, func() (chart, error) {
		bins, err := l.ScoreHistogram(ctx, decisionlog.Filter{Scope: scope, Since: since}, 1)
		if err != nil {
			return chart{}, err
		}
		var hl []string
		var hc []float64
		for _, b := range bins {
			hl = append(hl, strconv.FormatFloat(b.Low, 'f', -1, 64))
			hc = append(hc, float64(b.Count))
		}
		return chart{SVG: html(svgchart.Histogram("Score (30 days)", hl, hc))}, nil
	})
	for _, t := range []struct {
		title string
		key   decisionlog.TopKey
	}{
		{"Top blocked senders (30 days)", decisionlog.TopSender},
		{"Top blocked sender domains (30 days)", decisionlog.TopSenderDomain},
		{"Top blocked clients (30 days)", decisionlog.TopClient},
	} {
		tasks = append(tasks, func() (chart, error) {
			rows, err := l.Top(ctx, decisionlog.Filter{Scope: scope, Since: since, Blocked: true}, t.key, 10, false)
			if err != nil {
				return chart{}, err
			}
			items := make([]svgchart.Item, len(rows))
			for i, r := range rows {
				k := r.Key
				if k == "" {
					k = "<>"
				}
				items[i] = svgchart.Item{Label: k, Value: float64(r.Count)}
			}
			title := t.title
			if len(rows) > 0 && rows[0].Approx > 0 {
				// read from daily counters that keep each day's largest keys only
				title += fmt.Sprintf(" — approximate: counts may be low by up to %d", rows[0].Approx)
			}
			return chart{SVG: html(svgchart.Top(title, items))}, nil
		})
	}
	out := make([]chart, len(tasks))
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, task := range tasks {
		wg.Go(func() { out[i], errs[i] = task() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// buckets returns n labels from start and the index of each bucket by its date.
func buckets(start time.Time, n int, step func(time.Time, int) time.Time, format string) ([]string, map[string]int) {
	labels := make([]string, n)
	index := map[string]int{}
	for i := range n {
		t := step(start, i)
		labels[i] = t.Format(format)
		index[t.Format(time.DateOnly)] = i
	}
	return labels, index
}

// topKeys returns the n largest keys of m, then "other" when more exist.
func topKeys(m map[string]float64, n int) []string {
	items := top(m, len(m))
	var out []string
	for i, it := range items {
		if i == n {
			out = append(out, "other")
			break
		}
		out = append(out, it.Label)
	}
	return out
}
