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
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver of -generate

	"github.com/portcullis-mail/portcullis/decisionlog"
)

func main() {
	records := flag.Int("records", 1_000_000, "records to generate (0: search an existing log)")
	users := flag.Int("users", 30000, "users of the synthetic site")
	path := flag.String("path", "", "SQLite file")
	pg := flag.String("postgres", "", "PostgreSQL connection string (instead of -path)")
	queries := flag.Int("queries", 200, "searches of each kind")
	generate := flag.Bool("generate", false, "generate the records inside the store with SQL, without its indexes, then build the indexes and the charts' counters (10 million records in minutes; the insert rate is then not the server's)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the insertion to this file")
	chartsOnly := flag.Bool("charts", false, "with -records 0: time only the charts, before and after Optimize (which trims the top lists' daily counters of a log written before they were capped)")
	runs := flag.Int("runs", 20, "runs of each chart aggregation")
	beforeOnly := flag.Bool("before-only", false, "with -charts: time the charts as opened, and stop")
	trimWait := flag.Duration("trimwait", 0, "with -charts: time the charts only, this long after starting Optimize's trim (in the background)")
	flag.IntVar(&serverPID, "serverpid", 0, "with -postgres: the postmaster's PID, to report the server's CPU per inserted record (from /proc: it and its children)")
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
	cfg := decisionlog.Config{Path: *path, Postgres: *pg, Retention: -1, Buffer: 50000, BatchSize: 5000}
	end := time.Now().UTC().Truncate(time.Hour)
	start := end.Add(-365 * 24 * time.Hour)
	if *generate && *records > 0 {
		bulkGenerate(ctx, cfg, *records, *users, start, end)
	}
	l, err := decisionlog.Open(ctx, cfg, decisionlog.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	if !*generate && *records > 0 {
		insert(ctx, l, *records, *users, start, end)
	}
	if *chartsOnly && *trimWait > 0 {
		// the first trim of a year takes long on a loaded machine: it goes newest day
		// first, and the charts read the last weeks
		fmt.Printf("trimming in the background, newest days first; charts in %v\n", *trimWait)
		go func() {
			if err := l.Optimize(ctx); err != nil {
				log.Print(err)
			}
		}()
		time.Sleep(*trimWait)
		charts(ctx, l, time.Now().UTC(), *runs, false)
		return
	}
	if *chartsOnly {
		// a log just generated builds its counters in the background first
		t0 := time.Now()
		for !l.RollupsReady(ctx) {
			time.Sleep(time.Second)
		}
		fmt.Printf("charts' counters ready after %v\n", time.Since(t0).Round(time.Second))
		fmt.Println("charts as opened (the top lists' counters as they were written):")
		charts(ctx, l, time.Now().UTC(), *runs, false)
		if *beforeOnly {
			return
		}
		t0, c0 := time.Now(), cpuTime()
		if err := l.Optimize(ctx); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\noptimize (the daily counters' roll, the top lists' trim, statistics): %v wall, %v CPU of this process\n",
			time.Since(t0).Round(time.Millisecond), (cpuTime() - c0).Round(time.Millisecond))
		charts(ctx, l, time.Now().UTC(), *runs, false)
		return
	}
	// wait for the charts' counters (built in the background after a bulk generation)
	t0 := time.Now()
	for !l.RollupsReady(ctx) {
		time.Sleep(time.Second)
	}
	fmt.Printf("charts' counters ready after %v more\n", time.Since(t0).Round(time.Second))
	// what the log's hourly maintenance does (and autovacuum in PostgreSQL, in time)
	t0 = time.Now()
	if err := l.Optimize(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("optimize (planner statistics): %v\n", time.Since(t0).Round(time.Millisecond))
	search(ctx, l, *users, *queries, end)
	charts(ctx, l, time.Now().UTC(), *runs, true)
}

// charts times the aggregations of the admin's charts page (web.logFigures: 30 days,
// the whole site), which the counters answer.
func charts(ctx context.Context, l *decisionlog.Log, now time.Time, runs int, fromRecords bool) {
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
	// The same three lists read from the records: an end a microsecond past the hour is
	// not a whole day, so the counters do not answer.
	raw := blocked
	raw.Until = now.Add(time.Hour).Truncate(time.Hour).Add(time.Microsecond)
	for _, k := range []struct {
		name string
		key  decisionlog.TopKey
	}{{"top blocked senders, from the records", decisionlog.TopSender}, {"top blocked sender domains, from the records", decisionlog.TopSenderDomain},
		{"top blocked clients, from the records", decisionlog.TopClient}} {
		if !fromRecords {
			break
		}
		kinds = append(kinds, struct {
			name string
			f    func() error
		}{k.name, func() error { _, err := l.Top(ctx, raw, k.key, 10, false); return err }})
	}
	fmt.Printf("\n%-46s %8s %8s %8s   (admin's charts page, %d runs each)\n", "chart aggregation", "p50 ms", "p95 ms", "max ms", runs)
	pct := func(ds []time.Duration, p int) float64 {
		slices.Sort(ds)
		return float64(ds[(len(ds)-1)*p/100].Microseconds()) / 1000
	}
	for _, k := range kinds {
		var ds []time.Duration
		c0 := cpuTime()
		for range runs {
			t0 := time.Now()
			if err := k.f(); err != nil {
				log.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
		}
		cpu := float64((cpuTime() - c0).Microseconds()) / 1000 / float64(runs)
		fmt.Printf("%-46s %8.2f %8.2f %8.2f   CPU %.1f ms\n", k.name, pct(ds, 50), pct(ds, 95), pct(ds, 100), cpu)
	}
	// the page: its eight figures at once, as web.logFigures draws them; the CPU time
	// is this process's (SQLite's whole cost; PostgreSQL's client side only)
	page := func(name string, figures []func() error, before func()) {
		var ds []time.Duration
		c0 := cpuTime()
		for range runs {
			before()
			t0 := time.Now()
			var wg sync.WaitGroup
			for _, f := range figures {
				wg.Go(func() {
					if err := f(); err != nil {
						log.Fatal(err)
					}
				})
			}
			wg.Wait()
			ds = append(ds, time.Since(t0))
		}
		cpu := float64((cpuTime() - c0).Microseconds()) / 1000 / float64(runs)
		fmt.Printf("%-46s %8.2f %8.2f %8.2f   CPU %.1f ms a page\n", name, pct(ds, 50), pct(ds, 95), pct(ds, 100), cpu)
	}
	var admin []func() error
	for _, k := range kinds[:8] {
		admin = append(admin, k.f)
	}
	page("the page (its eight figures at once)", admin, func() {})
	// a user's page reads their own records (exact, and theirs only): one user a run
	r := rand.New(rand.NewPCG(5, 6))
	var scope decisionlog.Scope
	user := func(f func(decisionlog.Filter) error, g decisionlog.Filter) func() error {
		return func() error { g.Scope = scope; return f(g) }
	}
	bc := func(b decisionlog.Bucket) func(decisionlog.Filter) error {
		return func(f decisionlog.Filter) error { _, err := l.BlockedByCategory(ctx, f, b); return err }
	}
	tr := func(b decisionlog.Bucket) func(decisionlog.Filter) error {
		return func(f decisionlog.Filter) error { _, err := l.Traffic(ctx, f, b); return err }
	}
	tp := func(k decisionlog.TopKey) func(decisionlog.Filter) error {
		return func(f decisionlog.Filter) error { _, err := l.Top(ctx, f, k, 10, false); return err }
	}
	users := []func() error{
		user(bc(decisionlog.Day), decisionlog.Filter{Since: since}), user(bc(decisionlog.Week), decisionlog.Filter{Since: week}),
		user(tr(decisionlog.Hour), decisionlog.Filter{Since: hour.Add(-47 * time.Hour)}), user(tr(decisionlog.Day), decisionlog.Filter{Since: since}),
		user(func(f decisionlog.Filter) error { _, err := l.ScoreHistogram(ctx, f, 1); return err }, decisionlog.Filter{Since: since}),
		user(tp(decisionlog.TopSender), decisionlog.Filter{Since: since, Blocked: true}),
		user(tp(decisionlog.TopSenderDomain), decisionlog.Filter{Since: since, Blocked: true}),
		user(tp(decisionlog.TopClient), decisionlog.Filter{Since: since, Blocked: true}),
	}
	page("a user's page (eight figures, their records)", users, func() {
		// one user a page
		u := fmt.Sprintf("u%d@example.org", r.IntN(30000))
		scope = decisionlog.Scope{Recipients: []string{u, "alias-" + u}, AuthUser: u}
	})
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average: %s", b)
	}
	for _, k := range []decisionlog.TopKey{decisionlog.TopSender, decisionlog.TopSenderDomain, decisionlog.TopClient} {
		top, err := l.Top(ctx, blocked, k, 10, false)
		if err != nil {
			log.Fatal(err)
		}
		if len(top) > 0 {
			fmt.Printf("top list %d: first %s %d, last %s %d, approximate by up to %d\n", k, top[0].Key, top[0].Count, top[len(top)-1].Key, top[len(top)-1].Count, top[0].Approx)
		}
	}
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
	t0, cpu0, srv0 := time.Now(), cpuTime(), treeCPU(serverPID)
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
	if serverPID > 0 {
		srv := treeCPU(serverPID) - srv0
		fmt.Printf("insert: %.1f s of the database server's CPU: %.0f records per server CPU second (%.1f µs a record)\n",
			srv.Seconds(), float64(n)/srv.Seconds(), float64(srv.Microseconds())/float64(n))
	}
}

// serverPID is the database server's parent process (-serverpid), 0 for none.
var serverPID int

// treeCPU is the CPU time of process pid and its children, alive (utime, stime) or
// reaped by it (cutime, cstime), from /proc (proc(5), in USER_HZ = 100 ticks a second):
// a PostgreSQL server's whole cost, since each connection is a child of the postmaster.
func treeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var ticks int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// fields after the command, which may hold spaces: state ppid ... utime(14) stime cutime cstime
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		var self, ppid int
		fmt.Sscan(e.Name(), &self)
		fmt.Sscan(f[1], &ppid)
		if self != pid && ppid != pid {
			continue
		}
		for _, k := range f[11:15] {
			var v int64
			fmt.Sscan(k, &v)
			ticks += v
		}
	}
	return time.Duration(ticks) * (time.Second / 100)
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

// bulkGenerate fills an empty log with n records made by SQL inside the store (the
// same distribution as record, from a hash of the record's number instead of a random
// generator), without the indexes; then Open builds the indexes and the charts'
// counters, as it does for a log written before they existed.
func bulkGenerate(ctx context.Context, cfg decisionlog.Config, n, users int, start, end time.Time) {
	l, err := decisionlog.Open(ctx, cfg, decisionlog.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	l.Close()
	pg := cfg.Postgres != ""
	var db *sql.DB
	if pg {
		db, err = sql.Open("pgx", cfg.Postgres)
	} else {
		db, err = sql.Open("sqlite", cfg.Path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	q := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions' AND sql IS NOT NULL"
	if pg {
		q = "SELECT indexname FROM pg_indexes WHERE tablename = 'decisions' AND indexname <> 'decisions_pkey'"
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		log.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			log.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, "DROP INDEX "+n); err != nil {
			log.Fatal(err)
		}
	}
	t0 := time.Now()
	step := end.Sub(start).Microseconds() / int64(n)
	const chunk = 500_000
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n) - 1
		if _, err := db.ExecContext(ctx, generateSQL(pg, lo, hi, users, start.UnixMicro(), step)); err != nil {
			log.Fatalf("generate records %d-%d: %v", lo, hi, err)
		}
		fmt.Fprintf(os.Stderr, "  %d records, %.0f/s\n", hi+1, float64(hi+1)/time.Since(t0).Seconds())
	}
	fmt.Printf("generated %d records in the store in %v (%.0f/s, without indexes)\n", n, time.Since(t0).Round(time.Second), float64(n)/time.Since(t0).Seconds())
	// Without any of the build's state the next Open counts the generated records, as
	// for a log written before the counters existed. Deleting only "rollups" left the
	// empty log's floor and progress (0 and 0): the build looked done, the counters
	// stayed empty and the charts were timed over nothing.
	if _, err := db.ExecContext(ctx, "DELETE FROM decision_meta WHERE k IN ('rollups', 'rollups_floor', 'rollups_built')"); err != nil {
		log.Fatal(err)
	}
	db.Close()
	t0 = time.Now()
	if l, err = decisionlog.Open(ctx, cfg, decisionlog.Deps{}); err != nil {
		log.Fatal(err)
	}
	l.Close()
	fmt.Printf("indexes built in %v (the charts' counters are built in the background)\n", time.Since(t0).Round(time.Second))
}

// generateSQL is the INSERT of records lo..hi (inclusive). h(k) is the k-th hash of the
// record's number i: a multiplicative hash modulo a prime, in 64-bit integers in both
// stores.
func generateSQL(pg bool, lo, hi, users int, start, step int64) string {
	h := func(k int) string {
		mult := []int64{2654435761, 2246822519, 3266489917, 668265263, 374761393, 1181783497, 2870177450, 1609587929, 1073741827, 1500450271, 1376312589, 2147483629, 1664525, 1013904223, 22695477}[k]
		return fmt.Sprintf("((i * %d + %d) %% 2147483647)", mult, 7919*(k+1))
	}
	pad := func(list []string, w int) string {
		var b strings.Builder
		for _, s := range list {
			b.WriteString(fmt.Sprintf("%-*s", w, s))
		}
		return b.String()
	}
	pick := func(list []string, w int, idx string) string {
		return fmt.Sprintf("trim(substr('%s', CAST((%s) * %d + 1 AS INTEGER), %d))", pad(list, w), idx, w, w)
	}
	cat := func(parts ...string) string { return "((" + strings.Join(parts, ") || (") + "))" } // || binds tighter than %
	str := func(x string) string {
		if pg {
			return "CAST(" + x + " AS TEXT)"
		}
		return x
	}
	ip := fmt.Sprintf("((10 + %s %% 200) * 16777216 + (%s %% 256) * 65536 + (%s %% 256) * 256 + 1 + %s %% 254)", h(1), h(2), h(3), h(4))
	ipBlob := "unhex(printf('00000000000000000000ffff%08x', " + ip + "))"
	if pg {
		ipBlob = "decode('00000000000000000000ffff' || lpad(to_hex(" + ip + "), 8, '0'), 'hex')"
	}
	p := h(5) + " % 100"
	pol := func(zen string) string {
		return `'[{"name":"zen","stage":"connect","status":"` + zen + `"},{"name":"spf","stage":"mail","status":"pass"},{"name":"bayes","stage":"data","status":"neutral","score":0.5}]'`
	}
	sd := str(h(6) + " % 50000")
	cols := []string{
		fmt.Sprintf("%d + i * %d + %s %% %d", start, step, h(0), step), // t
		cat("'s'", str("i")), "'mx'", ipBlob,
		cat("'mail'", str(h(7)+" % 10"), "'.d'", str(h(8)+" % 50000"), "'.test'"), "'mail.example.net'", "''",
		cat("'user'", str(h(9)+" % 1000"), "'@d'", sd, "'.test'"), cat("'d'", sd, "'.test'"),
		cat("'u'", str(fmt.Sprintf("%s %% %d", h(10), users)), "'@example.org'"), "'example.org'", "'someone@example.net'",
		cat(pick(words, 12, h(11)+" % 20"), "' '", pick(words, 12, h(12)+" % 20"), "' '", str(h(13)+" % 1000")),
		cat(str("i"), "'.'", str(h(14)), "'@example.net'"),
		"2000 + " + h(2) + " % 60000",
		"CASE WHEN " + p + " < 50 THEN 'data' WHEN " + p + " < 67 THEN 'rcpt' ELSE 'data' END",
		"CASE WHEN " + p + " < 50 THEN 'accept' ELSE 'reject' END",
		"CASE WHEN " + p + " < 50 THEN '250 2.0.0 OK' WHEN " + p + " < 67 THEN '554 5.7.1 listed' ELSE '554 5.7.1 refused' END",
		"CASE WHEN " + p + " < 50 THEN '' WHEN " + p + " < 67 THEN 'zen' ELSE 'content' END",
		"CASE WHEN " + p + " < 50 THEN '' WHEN " + p + " < 67 THEN " + pick(categories[:3], 20, h(3)+" % 3") +
			" ELSE " + pick(categories[3:], 20, fmt.Sprintf("%s %% %d", h(3), len(categories)-3)) + " END",
		"CASE WHEN " + p + " < 67 AND " + p + " >= 50 THEN " + pol("fail") + " ELSE " + pol("none") + " END",
		"CASE WHEN " + p + " < 67 AND " + p + " >= 50 THEN ' zen bayes ' ELSE ' bayes ' END",
		"(" + h(4) + " % 200) / 10.0 - 5", "''",
		"CASE WHEN " + p + " < 50 THEN " + cat("'q'", str("i")) + " ELSE '' END",
		"CASE WHEN " + p + " < 50 THEN 'delivered' ELSE '' END", "''",
		fmt.Sprintf("CASE WHEN %s < 50 THEN %d + i * %d + %s %% %d + 1000000 ELSE 0 END", p, start, step, h(0), step),
		"CASE WHEN " + p + " < 50 THEN 'local' ELSE '' END", "''", "0",
	}
	insert := "INSERT INTO decisions (t, session, listener, client_ip, client_name, helo, auth_user, sender, sender_domain, recipient, rcpt_domain, from_addr, subject, message_id, size, stage, verdict, reply, rule, category, policies, flagged, score, tags, queue_id, outcome, outcome_reason, outcome_t, relay, dsn, deferrals) "
	sel := "SELECT " + strings.Join(cols, ", ")
	if pg {
		return fmt.Sprintf("%s %s FROM generate_series(%d::bigint, %d::bigint) AS s(i)", insert, sel, lo, hi)
	}
	return fmt.Sprintf("%s WITH RECURSIVE s(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM s WHERE i < %d) %s FROM s", insert, lo, hi, sel)
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
