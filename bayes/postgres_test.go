package bayes

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/policy"
)

// openPG opens a PostgreSQL store on dsn, closed when the test ends. Without a refresh
// interval in opt the background refresh is off: the tests call Refresh.
func openPG(t testing.TB, dsn string, opt PostgresOptions) *PostgresStore {
	t.Helper()
	if opt.RefreshInterval == 0 {
		opt.RefreshInterval = -1
	}
	s, err := OpenPostgres(context.Background(), dsn, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func refresh(t testing.TB, s *PostgresStore) int64 {
	t.Helper()
	before := s.rowsRead.Load()
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.rowsRead.Load() - before
}

func sameTable(t *testing.T, what string, a, b Store) {
	t.Helper()
	am, at := snapshot(t, a)
	bm, bt := snapshot(t, b)
	if at != bt || !maps.Equal(am, bm) {
		t.Errorf("%s: totals %v vs %v, %d vs %d tokens", what, at, bt, len(am), len(bm))
	}
}

// TestPostgresTwoNodes: what one node trains, another scores the same after its
// refresh, which reads only the rows that changed; a restarted node loads everything.
func TestPostgresTwoNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	a, b := openPG(t, dsn, PostgresOptions{}), openPG(t, dsn, PostgresOptions{})
	ca, _ := New(Config{}, a)
	cb, _ := New(Config{}, b)
	for _, c := range []*Classifier{ca, cb} {
		if err := c.CheckStore(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	trainAlternating(t, ca, r, 0, 40)
	probe := synthMessage(r, true, 999)
	want, _ := ca.Classify(ctx, probe)
	if got, _ := cb.Classify(ctx, probe); got.Tokens != 0 {
		t.Fatalf("b scored with %d clues before its refresh", got.Tokens)
	}
	n := refresh(t, b)
	sameTable(t, "after refresh", a, b)
	_, tot := snapshot(t, a)
	live := a.t.tokens.len()
	if n != int64(live) || tot.Spam != 20 || tot.Ham != 20 {
		t.Errorf("first refresh read %d rows for %d tokens, totals %v", n, live, tot)
	}
	if got, _ := cb.Classify(ctx, probe); got.Prob != want.Prob || !got.Spam {
		t.Errorf("b scores %v, a %v", got.Prob, want.Prob)
	}
	// one more message: the refresh reads its tokens, not the table
	up := ca.TrainUpdate(synthMessage(r, false, 1000), Ham)
	if _, err := a.Apply(ctx, []Update{up}); err != nil {
		t.Fatal(err)
	}
	if n := refresh(t, b); n != int64(len(up.Tokens)) || n >= int64(live) {
		t.Errorf("refresh after one message read %d rows, want its %d tokens (table: %d)", n, len(up.Tokens), live)
	}
	if n := refresh(t, b); n != 0 {
		t.Errorf("refresh without change read %d rows", n)
	}
	sameTable(t, "after a second refresh", a, b)
	// b trains: a's table catches up on its next refresh, b's at once, and b's Apply
	// also brings in what a trained meanwhile
	if _, err := a.Apply(ctx, []Update{ca.TrainUpdate(synthMessage(r, true, 1001), Spam)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Train(ctx, synthMessage(r, true, 1002), Spam); err != nil {
		t.Fatal(err)
	}
	refresh(t, a)
	sameTable(t, "after training on both", a, b)
	// the same message trained again on the other node is already trained
	if out, err := cb.Train(ctx, synthMessage(rand.New(rand.NewPCG(11, 12)), true, 0), Spam); err != nil || out != AlreadyTrained {
		t.Errorf("train on b of a message a trained: %v %v", out, err)
	}
	// a restarted node loads the whole table
	c := openPG(t, dsn, PostgresOptions{})
	if c.rowsRead.Load() != int64(c.t.tokens.len()) {
		t.Errorf("start read %d rows for %d tokens", c.rowsRead.Load(), c.t.tokens.len())
	}
	sameTable(t, "restarted", a, c)
	st, err := c.Stats(ctx)
	if err != nil || st.Messages != 43 || st.Totals != (Totals{Spam: 22, Ham: 21}) || st.OldestDay != Today() {
		t.Errorf("stats %+v %v", st, err)
	}
}

// TestPostgresConcurrentTraining: two nodes train at once, with tokens in common and
// some messages trained on both; the counts are those of the same training on one
// in-memory store, exactly.
func TestPostgresConcurrentTraining(t *testing.T) {
	testConcurrentTraining(t, pgtest.NewDatabase(t, pgtest.Start(t)))
}

// TestPostgresConcurrentTrainingSerializable: the same on a server whose default
// isolation level is stricter than read committed (default_transaction_isolation in
// postgresql.conf, as some sites set it): the writers' turns on the state row must not
// end in "could not serialize access", which would fail the Junk moves of a busy site.
func TestPostgresConcurrentTrainingSerializable(t *testing.T) {
	testConcurrentTraining(t, pgtest.NewDatabase(t, pgtest.Start(t))+"&default_transaction_isolation=serializable")
}

func testConcurrentTraining(t *testing.T, dsn string) {
	ctx := context.Background()
	a, b := openPG(t, dsn, PostgresOptions{}), openPG(t, dsn, PostgresOptions{})
	r := rand.New(rand.NewPCG(13, 14))
	mk := func(id int) Update {
		toks := map[uint64]bool{}
		for range 30 {
			toks[uint64(1+r.IntN(300))] = true // a small vocabulary: every batch collides
		}
		return Update{Class: Class(1 + id%2), Digest: uint64(id), Tokens: slicesKeys(toks)}
	}
	var forA, forB, all []Update
	for i := 1; i <= 400; i++ {
		u := mk(i)
		all = append(all, u)
		switch {
		case i%10 == 0: // both nodes train it (two users move the same message)
			forA, forB = append(forA, u), append(forB, u)
		case i%2 == 0:
			forA = append(forA, u)
		default:
			forB = append(forB, u)
		}
	}
	mem := NewMemStore()
	if _, err := mem.Apply(ctx, all); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outcomes := make(chan Outcome, len(forA)+len(forB))
	for _, job := range []struct {
		s   *PostgresStore
		ups []Update
	}{{a, forA}, {b, forB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(job.ups); {
				n := min(1+i%7, len(job.ups)-i)
				out, err := job.s.Apply(ctx, job.ups[i:i+n])
				if err != nil {
					t.Error(err)
					return
				}
				for _, o := range out {
					outcomes <- o
				}
				i += n
			}
		}()
	}
	wg.Wait()
	close(outcomes)
	count := map[Outcome]int{}
	for o := range outcomes {
		count[o]++
	}
	if count[Applied] != len(all) || count[AlreadyTrained] != len(forA)+len(forB)-len(all) {
		t.Errorf("outcomes %v, want %d applied and %d already trained", count, len(all), len(forA)+len(forB)-len(all))
	}
	refresh(t, a)
	refresh(t, b)
	sameTable(t, "node a", mem, a)
	sameTable(t, "node b", mem, b)
	sameTable(t, "a new node", mem, openPG(t, dsn, PostgresOptions{}))
}

func slicesKeys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestPostgresPrunePropagates: tokens pruned on one node leave the others' tables; a
// node that missed the tombstones before they were deleted loads everything.
func TestPostgresPrunePropagates(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	a, b, lag := openPG(t, dsn, PostgresOptions{}), openPG(t, dsn, PostgresOptions{}), openPG(t, dsn, PostgresOptions{})
	old := dayOf(time.Now().Add(-400 * 24 * time.Hour))
	if _, err := a.Apply(ctx, []Update{
		{Class: Spam, Tokens: []uint64{1, 2, 3}, Day: old},
		{Class: Ham, Tokens: []uint64{3, 5}, Day: old},
		{Class: Ham, Tokens: []uint64{4}},
	}); err != nil {
		t.Fatal(err)
	}
	refresh(t, b)
	cfg := PruneConfig{MaxAge: 365 * 24 * time.Hour, MinCount: 1}
	if n, err := a.Prune(ctx, cfg); err != nil || n != 3 {
		t.Fatalf("pruned %d, %v; want 3 (tokens 1, 2 and 5)", n, err)
	}
	if n := refresh(t, b); n != 3 {
		t.Errorf("refresh after prune read %d rows, want the 3 tombstones", n)
	}
	out := make([]Counts, 5)
	b.Lookup(ctx, []uint64{1, 2, 3, 4, 5}, out)
	if out[0] != (Counts{}) || out[1] != (Counts{}) || out[2] != (Counts{1, 1}) || out[3] != (Counts{0, 1}) || out[4] != (Counts{}) {
		t.Errorf("b after prune: %v", out)
	}
	sameTable(t, "after prune", a, b)
	// the second prune deletes the first one's tombstones: lag, which never refreshed
	// since, cannot see them go and must load the table
	if _, err := a.Apply(ctx, []Update{{Class: Spam, Tokens: []uint64{6}, Day: old}}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Prune(ctx, cfg); err != nil || n != 1 {
		t.Fatalf("second prune %d, %v", n, err)
	}
	var rows int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM bayes_tokens`).Scan(&rows); err != nil || rows != 3 {
		t.Errorf("%d rows after the second prune (%v), want tokens 3 and 4 and the tombstone of 6", rows, err)
	}
	if n := refresh(t, lag); n != 2 {
		t.Errorf("lagging node read %d rows, want a full load of 2 tokens", n)
	}
	sameTable(t, "lagging node", a, lag)
	refresh(t, b)
	sameTable(t, "b after the second prune", a, b)
}

// TestPostgresFingerprint: a store trained by another tokenizer version is refused on
// every node.
func TestPostgresFingerprint(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	a, b := openPG(t, dsn, PostgresOptions{}), openPG(t, dsn, PostgresOptions{})
	ca, _ := New(Config{}, a)
	if err := ca.CheckStore(ctx); err != nil {
		t.Fatal(err)
	}
	trainAlternating(t, ca, rand.New(rand.NewPCG(1, 1)), 0, 4)
	cb, _ := New(Config{}, b)
	if err := cb.CheckStore(ctx); err != nil {
		t.Fatalf("same tokenizer refused: %v", err)
	}
	if err := a.SetMeta(ctx, fingerprintKey, "0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	refresh(t, b)
	if err := cb.CheckStore(ctx); err == nil || !strings.Contains(err.Error(), "retrain") {
		t.Errorf("CheckStore on b accepted a store trained by another tokenizer: %v", err)
	}
}

// TestPostgresDown: with the server gone, a node goes on classifying from its table
// and logs it once; training fails with an error naming PostgreSQL; when the server
// is back, the refresh logs the recovery and training works again.
func TestPostgresDown(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := pgtest.NewDatabase(t, srv.DSN)
	var logs testenv.LockedBuffer
	s := openPG(t, dsn, PostgresOptions{RefreshInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c, _ := New(Config{}, s)
	r := rand.New(rand.NewPCG(15, 16))
	trainAlternating(t, c, r, 0, 30)
	probe := synthMessage(r, true, 999)
	want, _ := c.Classify(ctx, probe)

	srv.Stop()
	waitFor(t, &logs, "postgres unreachable")
	if got, err := c.Classify(ctx, probe); err != nil || got.Prob != want.Prob {
		t.Errorf("classify with the server down: %v %v, want %v", got.Prob, err, want.Prob)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err := c.Train(tctx, synthMessage(r, false, 1000), Ham)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("train with the server down: %v", err)
	}
	if n := strings.Count(logs.String(), "postgres unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times", n)
	}

	srv.Restart()
	waitFor(t, &logs, "reachable again")
	if out, err := c.Train(ctx, synthMessage(r, false, 1000), Ham); err != nil || out != Applied {
		t.Errorf("train after the restart: %v %v", out, err)
	}
}

func waitFor(t *testing.T, logs *testenv.LockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPolicyPostgres: the policy of a front-end classifies with the site-wide database
// that another node trains, learns into it, and tries again to open it when PostgreSQL
// was down at the first message.
func TestPolicyPostgres(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	dsn := pgtest.NewDatabase(t, srv.DSN)
	defer func(d time.Duration) { openRetry = d }(openRetry)
	openRetry = 50 * time.Millisecond
	p, err := NewPolicy(PolicyConfig{DB: filepath.Join(t.TempDir(), "global.db"), Autolearn: AutolearnConfig{Spam: 0.99, Ham: 0.01}},
		Deps{Postgres: dsn, Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := rand.New(rand.NewPCG(17, 18))
	spam := synthMessage(r, true, 1000)
	check := func(raw []byte) policy.Result {
		tx := &policy.Transaction{Message: policy.NewMessage(raw, time.Now())}
		tx.Envelope.Rcpts = []address.Address{address.Parse("bob@example.net")}
		return p.CheckData(ctx, tx)
	}
	srv.Stop()
	if res := check(spam); res.Status != policy.StatusTempError || res.Err == nil {
		t.Fatalf("with PostgreSQL down: %v %v", res.Status, res.Err)
	}
	srv.Restart()
	time.Sleep(2 * openRetry)
	if res := check(spam); res.Reason != "bayes.untrained" {
		t.Fatalf("empty database: %v %q %v", res.Status, res.Reason, res.Err)
	}
	// another node trains; the policy's store sees it within its refresh interval
	trainer := openPG(t, dsn, PostgresOptions{})
	c, _ := New(Config{}, trainer)
	trainAlternating(t, c, r, 0, 40)
	deadline := time.Now().Add(30 * time.Second)
	for res := check(spam); res.Reason != "bayes.spam"; res = check(spam) {
		if time.Now().After(deadline) {
			t.Fatalf("the policy never saw the other node's training: %v %q %v", res.Status, res.Reason, res.Err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// auto-learning wrote the spam into the shared database (once: it is tracked)
	if st, err := trainer.Stats(ctx); err != nil || st.Totals != (Totals{Spam: 21, Ham: 20}) {
		t.Errorf("after autolearn: %+v %v, want 21 spam and 20 ham", st.Totals, err)
	}
}

// TestOpenStoreWarnsUntrainedShared: a node upgraded to the shared database (bayes.postgres
// defaults to directory.postgres) whose own SQLite database was trained says so in the
// log, since it otherwise scores nothing (bayes.untrained) without a word; once the
// shared database is trained, or without a local database, it is quiet.
func TestOpenStoreWarnsUntrainedShared(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	dir := t.TempDir()
	db := filepath.Join(dir, "global.db")
	open := func(path string) string {
		t.Helper()
		var logs testenv.LockedBuffer
		s, err := OpenStore(ctx, path, dsn, -1, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		return logs.String()
	}
	if l := open(db); strings.Contains(l, "is empty") {
		t.Errorf("warned without a local database: %s", l)
	}
	local, err := OpenSQLite(ctx, db, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := New(Config{}, local)
	r := rand.New(rand.NewPCG(19, 20))
	trainAlternating(t, c, r, 0, 10)
	local.Close()
	if l := open(db); !strings.Contains(l, "is empty") || !strings.Contains(l, db) {
		t.Errorf("no warning about the unused local database %s: %q", db, l)
	}
	shared := openPG(t, dsn, PostgresOptions{})
	c, _ = New(Config{}, shared)
	trainAlternating(t, c, r, 10, 10)
	if l := open(db); strings.Contains(l, "is empty") {
		t.Errorf("warned with a trained shared database: %s", l)
	}
}

// TestPolicyOpenCancelled: a message whose session ends while the policy opens the
// database (loading the whole table takes seconds) does not make the policy answer
// temperror to the next messages for openRetry: the database did not fail.
func TestPolicyOpenCancelled(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	p, err := NewPolicy(PolicyConfig{DB: filepath.Join(t.TempDir(), "global.db")}, Deps{Postgres: dsn, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	check := func(ctx context.Context) policy.Result {
		tx := &policy.Transaction{Message: policy.NewMessage([]byte("Subject: hi\r\n\r\nhello\r\n"), time.Now())}
		return p.CheckData(ctx, tx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := check(ctx); res.Status != policy.StatusTempError {
		t.Fatalf("with the session gone: %v %q", res.Status, res.Reason)
	}
	if res := check(context.Background()); res.Reason != "bayes.untrained" {
		t.Errorf("the next message: %v %q %v, want bayes.untrained", res.Status, res.Reason, res.Err)
	}
}
