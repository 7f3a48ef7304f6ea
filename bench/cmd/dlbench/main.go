// Command dlbench measures the decision log at the size of a real site: it fills a log
// with synthetic records (one year of a site of -users users), then times the searches
// the web page makes — a user's own mail, and an admin's filtered searches — and reports
// the insertion rate and each search's median and 95th percentile. bench/decisionlog.sh
// runs it on SQLite and on PostgreSQL.
//
//	dlbench -records 1000000 -path /tmp/d.db
//	dlbench -records 1000000 -postgres postgres://u@127.0.0.1:5432/bench
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

func main() {
	records := flag.Int("records", 1_000_000, "records to generate (0: search an existing log)")
	users := flag.Int("users", 30000, "users of the synthetic site")
	path := flag.String("path", "", "SQLite file")
	pg := flag.String("postgres", "", "PostgreSQL connection string (instead of -path)")
	queries := flag.Int("queries", 200, "searches of each kind")
	bulk := flag.Bool("bulk", false, "SQLite: insert without the indexes, then build them (to reach 10 million records sooner; the insert rate is then not the server's)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the insertion to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	if *bulk && *path != "" && *records > 0 {
		l, err := decisionlog.Open(ctx, decisionlog.Config{Path: *path, Retention: -1}, decisionlog.Deps{})
		if err != nil {
			log.Fatal(err)
		}
		l.Close()
		dropIndexes(*path)
	}
	l, err := decisionlog.Open(ctx, decisionlog.Config{Path: *path, Postgres: *pg, Retention: -1, Buffer: 50000, BatchSize: 5000},
		decisionlog.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	end := time.Now().UTC().Truncate(time.Hour)
	start := end.Add(-365 * 24 * time.Hour)
	if *records > 0 {
		insert(ctx, l, *records, *users, start, end)
	}
	if *bulk && *path != "" && *records > 0 {
		// Open creates the missing indexes
		l.Close()
		t0 := time.Now()
		if l, err = decisionlog.Open(ctx, decisionlog.Config{Path: *path, Retention: -1}, decisionlog.Deps{}); err != nil {
			log.Fatal(err)
		}
		defer l.Close()
		fmt.Printf("indexes built in %v\n", time.Since(t0).Round(time.Second))
	}
	// what the log's hourly maintenance does (and autovacuum in PostgreSQL, in time)
	t0 := time.Now()
	if err := l.Optimize(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("optimize (planner statistics): %v\n", time.Since(t0).Round(time.Millisecond))
	search(ctx, l, *users, *queries, end)
	charts(ctx, l, time.Now().UTC())
}

// charts times the aggregations of the admin's charts page (web.logFigures: 30 days,
// the whole site), which the counters answer.
func charts(ctx context.Context, l *decisionlog.Log, now time.Time) {
	day := now.Truncate(24 * time.Hour)
	hour := now.Truncate(time.Hour)
	week := day.AddDate(0, 0, -((int(day.Weekday())+6)%7)-7*11)
	all := decisionlog.Scope{All: true}
	since := day.AddDate(0, 0, -29)
	blocked := decisionlog.Filter{Scope: all, Since: since, Blocked: true}
	kinds := []struct {
		name string
		f    func() error
	}{
		{"blocked per day, by category", func() error {
			_, err := l.BlockedByCategory(ctx, decisionlog.Filter{Scope: all, Since: since}, decisionlog.Day)
			return err
		}},
		{"blocked per week, by category", func() error {
			_, err := l.BlockedByCategory(ctx, decisionlog.Filter{Scope: all, Since: week}, decisionlog.Week)
			return err
		}},
		{"traffic per hour, 48 h", func() error {
			_, err := l.Traffic(ctx, decisionlog.Filter{Scope: all, Since: hour.Add(-47 * time.Hour)}, decisionlog.Hour)
			return err
		}},
		{"traffic per day, 30 days", func() error {
			_, err := l.Traffic(ctx, decisionlog.Filter{Scope: all, Since: since}, decisionlog.Day)
			return err
		}},
		{"score histogram", func() error {
			_, err := l.ScoreHistogram(ctx, decisionlog.Filter{Scope: all, Since: since}, 1)
			return err
		}},
		{"top blocked senders", func() error { _, err := l.Top(ctx, blocked, decisionlog.TopSender, 10, false); return err }},
		{"top blocked sender domains", func() error { _, err := l.Top(ctx, blocked, decisionlog.TopSenderDomain, 10, false); return err }},
		{"top blocked clients", func() error { _, err := l.Top(ctx, blocked, decisionlog.TopClient, 10, false); return err }},
	}
	fmt.Printf("\n%-40s %8s %8s   (admin's charts page, 5 runs each)\n", "chart aggregation", "p50 ms", "max ms")
	var total time.Duration
	for _, k := range kinds {
		var ds []time.Duration
		for range 5 {
			t0 := time.Now()
			if err := k.f(); err != nil {
				log.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		total += ds[2]
		fmt.Printf("%-40s %8.2f %8.2f\n", k.name, float64(ds[2].Microseconds())/1000, float64(ds[4].Microseconds())/1000)
	}
	fmt.Printf("%-40s %8.2f\n", "the page (sum of the medians)", float64(total.Microseconds())/1000)
}

var categories = []string{"RBL", "RHSBL client", "Header Date", "Header Subject", "Header X-Mailer",
	"Content-Disposition", "Content-Type", "Body", "Access username", "Virus", "Spam", "unknown_user", "relay"}

var words = []string{"invoice", "meeting", "report", "offer", "free", "money", "lunch", "project", "update", "urgent",
	"payment", "order", "delivery", "account", "password", "newsletter", "holiday", "budget", "review", "contract"}

// record makes the i-th of n synthetic records: in time order over [start, end), as a
// server writes them; half the traffic refused (a third of it before DATA), recipients
// spread over the users, senders over 50,000 domains.
func record(r *rand.Rand, i, n, users int, start, end time.Time) decisionlog.Record {
	step := end.Sub(start) / time.Duration(n)
	t := start.Add(step*time.Duration(i) + time.Duration(r.Int64N(int64(step))))
	u := r.IntN(users)
	ip := netip.AddrFrom4([4]byte{byte(10 + r.IntN(200)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
	rec := decisionlog.Record{
		Time: t, Session: fmt.Sprintf("s%d", i), Listener: "mx", ClientIP: ip,
		ClientName: fmt.Sprintf("mail%d.d%d.test", r.IntN(10), r.IntN(50000)),
		HELO:       "mail.example.net", Sender: fmt.Sprintf("user%d@d%d.test", r.IntN(1000), r.IntN(50000)),
		Recipient: fmt.Sprintf("u%d@example.org", u), From: "someone@example.net",
		Subject:   words[r.IntN(len(words))] + " " + words[r.IntN(len(words))] + " " + fmt.Sprint(r.IntN(1000)),
		MessageID: fmt.Sprintf("%d.%d@example.net", i, r.Int64()), Size: int64(2000 + r.IntN(60000)),
		Score: float64(r.IntN(200))/10 - 5,
		Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "connect", Status: "none"}, {Name: "spf", Stage: "mail", Status: "pass"},
			{Name: "bayes", Stage: "data", Status: "neutral", Score: r.Float64()}},
	}
	switch p := r.IntN(100); {
	case p < 50:
		rec.Stage, rec.Verdict, rec.Reply, rec.QueueID = "data", "accept", "250 2.0.0 OK", fmt.Sprintf("q%d", i)
		rec.Outcome, rec.OutcomeTime, rec.Relay = "delivered", t.Add(time.Second), "local"
	case p < 67:
		rec.Stage, rec.Verdict, rec.Rule = "rcpt", "reject", "zen"
		rec.Category, rec.Reply = categories[r.IntN(3)], "554 5.7.1 listed"
		rec.Policies[0].Status = "fail"
	default:
		rec.Stage, rec.Verdict, rec.Rule = "data", "reject", "content"
		rec.Category, rec.Reply = categories[3+r.IntN(len(categories)-3)], "554 5.7.1 refused"
	}
	return rec
}

// insert adds n records in chunks the writer's buffer holds, waiting for each chunk, and
// reports the rate.
func insert(ctx context.Context, l *decisionlog.Log, n, users int, start, end time.Time) {
	r := rand.New(rand.NewPCG(1, 2))
	t0, cpu0 := time.Now(), cpuTime()
	const chunk = 25000
	for i := 0; i < n; i++ {
		l.Add(record(r, i, n, users, start, end))
		if (i+1)%chunk == 0 || i == n-1 {
			if err := l.Flush(ctx); err != nil {
				log.Fatal(err)
			}
			if (i+1)%(20*chunk) == 0 {
				fmt.Fprintf(os.Stderr, "  %d records, %.0f/s\n", i+1, float64(i+1)/time.Since(t0).Seconds())
			}
		}
	}
	el := time.Since(t0)
	cpu := cpuTime() - cpu0
	fmt.Printf("insert: %d records in %v: %.0f records/s (generation included); %.1f s of CPU in this process: %.0f records per CPU second\n",
		n, el.Round(time.Millisecond), float64(n)/el.Seconds(), cpu.Seconds(), float64(n)/cpu.Seconds())
}

// cpuTime is the process's user and system time (for SQLite, the whole cost; for
// PostgreSQL, the client's side only).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dropIndexes drops the decision log's indexes from the SQLite file at path.
func dropIndexes(path string) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions' AND sql IS NOT NULL")
	if err != nil {
		log.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.Exec("DROP INDEX " + n); err != nil {
			log.Fatal(err)
		}
	}
}

func search(ctx context.Context, l *decisionlog.Log, users, q int, end time.Time) {
	r := rand.New(rand.NewPCG(3, 4))
	all := decisionlog.Scope{All: true}
	kinds := []struct {
		name string
		f    func() decisionlog.Filter
	}{
		{"user: own mail, newest 50", func() decisionlog.Filter {
			u := fmt.Sprintf("u%d@example.org", r.IntN(users))
			return decisionlog.Filter{Scope: decisionlog.Scope{Recipients: []string{u, "alias-" + u}, AuthUser: u}}
		}},
		{"user: own blocked mail, last 30 days", func() decisionlog.Filter {
			u := fmt.Sprintf("u%d@example.org", r.IntN(users))
			return decisionlog.Filter{Scope: decisionlog.Scope{Recipients: []string{u}, AuthUser: u}, Blocked: true, Since: end.Add(-30 * 24 * time.Hour)}
		}},
		{"user: own mail from a domain", func() decisionlog.Filter {
			u := fmt.Sprintf("u%d@example.org", r.IntN(users))
			return decisionlog.Filter{Scope: decisionlog.Scope{Recipients: []string{u}}, Sender: fmt.Sprintf("d%d.test", r.IntN(50000))}
		}},
		{"admin: sender domain", func() decisionlog.Filter {
			return decisionlog.Filter{Scope: all, Address: fmt.Sprintf("d%d.test", r.IntN(50000))}
		}},
		{"admin: client /24, last 7 days", func() decisionlog.Filter {
			return decisionlog.Filter{Scope: all, Client: fmt.Sprintf("%d.%d.%d.0/24", 10+r.IntN(200), r.IntN(256), r.IntN(256)), Since: end.Add(-7 * 24 * time.Hour)}
		}},
		{"admin: category, one day", func() decisionlog.Filter {
			d := end.Add(-time.Duration(r.IntN(365)) * 24 * time.Hour)
			return decisionlog.Filter{Scope: all, Categories: []string{categories[r.IntN(len(categories))]}, Since: d.Add(-24 * time.Hour), Until: d}
		}},
		{"admin: recipient, rejected", func() decisionlog.Filter {
			return decisionlog.Filter{Scope: all, Recipient: fmt.Sprintf("u%d@example.org", r.IntN(users)), Verdicts: []string{"reject"}}
		}},
		{"admin: message-id", func() decisionlog.Filter {
			return decisionlog.Filter{Scope: all, MessageID: fmt.Sprintf("%d.x@example.net", r.IntN(1000))}
		}},
		{"admin: newest 50, no filter", func() decisionlog.Filter { return decisionlog.Filter{Scope: all} }},
		{"admin: subject word, last 24 hours", func() decisionlog.Filter {
			return decisionlog.Filter{Scope: all, Subject: words[r.IntN(len(words))], Since: end.Add(-24 * time.Hour)}
		}},
	}
	fmt.Printf("%-40s %8s %8s %8s %8s\n", "search ("+fmt.Sprint(q)+" each)", "p50 ms", "p95 ms", "max ms", "rows")
	for _, k := range kinds {
		var ds []time.Duration
		rows := 0
		for range q {
			f := k.f()
			t0 := time.Now()
			page, _, err := l.Query(ctx, f)
			if err != nil {
				log.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
			rows += len(page)
		}
		slices.Sort(ds)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Printf("%-40s %8.2f %8.2f %8.2f %8.1f\n", k.name, ms(ds[len(ds)/2]), ms(ds[len(ds)*95/100]), ms(ds[len(ds)-1]), float64(rows)/float64(q))
	}
}
