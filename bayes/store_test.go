package bayes

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// synthMessage builds a message whose words come from a spam-ish or ham-ish
// vocabulary, plus a few words unique to the message.
func synthMessage(r *rand.Rand, spam bool, id int) []byte {
	vocab := []string{"meeting", "project", "review", "patch", "kernel", "release", "thanks", "lunch"}
	if spam {
		vocab = []string{"viagra", "winner", "casino", "mortgage", "cheap", "offer", "money", "click"}
	}
	msg := fmt.Sprintf("From: sender%d@example.org\nSubject: %s %s\nMessage-ID: <%d@example.org>\n\n", id, vocab[r.IntN(8)], vocab[r.IntN(8)], id)
	for i := 0; i < 30; i++ {
		msg += vocab[r.IntN(len(vocab))] + " "
	}
	msg += fmt.Sprintf("unique%dword common shared words here\n", id)
	return []byte(msg)
}

// classOf is the class a synthMessage of the spam or ham vocabulary is trained as.
func classOf(spam bool) Class {
	if spam {
		return Spam
	}
	return Ham
}

// trainAlternating trains c on n synthetic messages drawn from r, spam and ham in turn,
// with the ids first, first+1, ...
func trainAlternating(t testing.TB, c *Classifier, r *rand.Rand, first, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.Train(context.Background(), synthMessage(r, i%2 == 0, first+i), classOf(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
}

// newTrained returns a classifier over s trained on 40 synthetic messages drawn from r.
func newTrained(t *testing.T, s Store, r *rand.Rand) *Classifier {
	t.Helper()
	c, err := New(Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	trainAlternating(t, c, r, 0, 40)
	return c
}

// checkRestored fails the test unless s holds what snapshot returned as before and btot.
func checkRestored(t *testing.T, s Store, before map[uint64]entry, btot Totals) {
	t.Helper()
	after, atot := snapshot(t, s)
	if btot != atot || !maps.Equal(before, after) {
		t.Errorf("untrain did not restore the store: totals %v -> %v, %d -> %d tokens", btot, atot, len(before), len(after))
	}
}

func snapshot(t *testing.T, s Store) (map[uint64]entry, Totals) {
	t.Helper()
	var tab *table
	switch st := s.(type) {
	case *MemStore:
		st.mu.RLock()
		defer st.mu.RUnlock()
		tab = st.t
	case *SQLiteStore:
		st.mu.RLock()
		defer st.mu.RUnlock()
		tab = st.t
	case *PostgresStore:
		st.mu.RLock()
		defer st.mu.RUnlock()
		tab = st.t
	}
	m := map[uint64]entry{}
	for h, e := range tab.tokens.all() {
		e.day = 0 // untraining does not roll the day back
		m[h] = e
	}
	return m, tab.totals
}

// eachStore runs test as a subtest on a new store of each kind: in memory, SQLite and
// PostgreSQL (a real server, internal/pgtest).
func eachStore(t *testing.T, test func(t *testing.T, s Store)) {
	t.Run("mem", func(t *testing.T) { test(t, NewMemStore()) })
	t.Run("sqlite", func(t *testing.T) {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "b.db"), SQLiteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		s := openPG(t, pgtest.NewDatabase(t, pgtest.Start(t)), PostgresOptions{})
		test(t, s)
	})
}

func TestTrainUntrainReversible(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, s Store) {
		r := rand.New(rand.NewPCG(1, 2))
		c := newTrained(t, s, r)
		before, btot := snapshot(t, s)
		var extra [][]byte
		for i := 100; i < 110; i++ {
			m := synthMessage(r, i%3 == 0, i)
			extra = append(extra, m)
			out, err := c.Train(ctx, m, Spam)
			if err != nil || out != Applied {
				t.Fatalf("train: %v %v", out, err)
			}
		}
		// training again is a no-op; training as the other class moves the message
		if out, _ := c.Train(ctx, extra[0], Spam); out != AlreadyTrained {
			t.Errorf("second train: %v", out)
		}
		if out, _ := c.Train(ctx, extra[1], Ham); out != Relearned {
			t.Errorf("relearn: %v", out)
		}
		for _, m := range extra {
			if out, err := c.Untrain(ctx, m); err != nil || out != Applied {
				t.Fatalf("untrain: %v %v", out, err)
			}
		}
		if out, _ := c.Untrain(ctx, extra[0]); out != NotTrained {
			t.Errorf("second untrain: %v", out)
		}
		checkRestored(t, s, before, btot)
	})
}

func TestSQLitePersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "global.db")
	s, err := OpenSQLite(ctx, path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := New(Config{}, s)
	if err := c.CheckStore(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	trainAlternating(t, c, r, 0, 30)
	probe := synthMessage(r, true, 999)
	want, _ := c.Classify(ctx, probe)
	before, btot := snapshot(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, nil, nil); err != ErrClosed {
		t.Errorf("lookup after close: %v", err)
	}

	s2, err := OpenSQLite(ctx, path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	after, atot := snapshot(t, s2)
	if btot != atot || !maps.Equal(before, after) || btot.Spam != 15 || btot.Ham != 15 {
		t.Fatalf("reopened store differs: %v vs %v, %d vs %d tokens", btot, atot, len(before), len(after))
	}
	c2, _ := New(Config{}, s2)
	if err := c2.CheckStore(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := c2.Classify(ctx, probe)
	if got.Prob != want.Prob || !got.Spam {
		t.Errorf("score after reopen %v, before %v", got.Prob, want.Prob)
	}
	// the seen table survives too: the same message is already trained
	if out, _ := c2.Train(ctx, synthMessage(rand.New(rand.NewPCG(3, 4)), true, 0), Spam); out != AlreadyTrained {
		t.Errorf("train after reopen: %v", out)
	}
	// a store trained by another tokenizer version is refused
	if err := s2.SetMeta(ctx, fingerprintKey, "0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := c2.CheckStore(ctx); err == nil {
		t.Error("CheckStore accepted a store trained by another tokenizer")
	}
}

// TestSQLiteSeesOtherWriter: a second process (here a second handle) trains; the first
// picks the change up within its refresh interval.
func TestSQLiteSeesOtherWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.db")
	a, err := OpenSQLite(ctx, path, SQLiteOptions{RefreshInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSQLite(ctx, path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Apply(ctx, []Update{{Class: Spam, Tokens: []uint64{42}}}); err != nil {
		t.Fatal(err)
	}
	out := make([]Counts, 1)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tot, err := a.Lookup(ctx, []uint64{42}, out)
		if err != nil {
			t.Fatal(err)
		}
		if tot.Spam == 1 && out[0].Spam == 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the first handle never saw the second one's training")
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, s Store) {
		old := dayOf(time.Now().Add(-400 * 24 * time.Hour))
		_, err := s.Apply(ctx, []Update{
			{Class: Spam, Tokens: []uint64{1, 2, 3}, Day: old},
			{Class: Ham, Tokens: []uint64{3}, Day: old},
			{Class: Ham, Tokens: []uint64{4}},
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Prune(ctx, PruneConfig{MaxAge: 365 * 24 * time.Hour, MinCount: 1})
		if err != nil || n != 2 {
			t.Fatalf("pruned %d, %v; want 2 (tokens 1 and 2)", n, err)
		}
		out := make([]Counts, 4)
		s.Lookup(ctx, []uint64{1, 2, 3, 4}, out)
		if out[0] != (Counts{}) || out[1] != (Counts{}) || out[2] != (Counts{1, 1}) || out[3] != (Counts{0, 1}) {
			t.Errorf("after prune: %v", out)
		}
	})
}

// TestClassifyWhileTraining runs classification concurrently with training (run
// under -race): scores stay valid and a message trained before stays classified.
func TestClassifyWhileTraining(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, s Store) {
		c, _ := New(Config{}, s)
		r := rand.New(rand.NewPCG(5, 6))
		var seed []Example
		for i := 0; i < 40; i++ {
			seed = append(seed, Example{Raw: synthMessage(r, i%2 == 0, i), Class: classOf(i%2 == 0)})
		}
		if _, err := c.TrainBatch(ctx, seed); err != nil {
			t.Fatal(err)
		}
		spam, ham := synthMessage(r, true, 5000), synthMessage(r, false, 5001)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		errs := make(chan error, 8)
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					a, err1 := c.Classify(ctx, spam)
					b, err2 := c.Classify(ctx, ham)
					if err1 != nil || err2 != nil || !a.Spam || b.Spam || b.Unsure {
						errs <- fmt.Errorf("during training: spam %v %v, ham %v %v", a.Prob, err1, b.Prob, err2)
						return
					}
				}
			}()
		}
		tr := rand.New(rand.NewPCG(7, 8))
		for i := 100; i < 160; i++ {
			spam := i%2 == 0
			if _, err := c.Train(ctx, synthMessage(tr, spam, i), classOf(spam)); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				if _, err := s.Prune(ctx, PruneConfig{MaxAge: time.Hour, MinCount: 0}); err != nil {
					t.Fatal(err)
				}
			}
		}
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestTrainOnError(t *testing.T) {
	ctx := context.Background()
	c, _ := New(Config{}, NewMemStore())
	r := rand.New(rand.NewPCG(9, 10))
	trainAlternating(t, c, r, 0, 30)
	_, trained, err := c.TrainOnError(ctx, synthMessage(r, true, 100), Spam)
	if err != nil || trained {
		t.Errorf("a correctly classified spam was trained: %v %v", trained, err)
	}
	// a ham that looks like spam is an error: it gets trained
	_, trained, err = c.TrainOnError(ctx, synthMessage(r, true, 101), Ham)
	if err != nil || !trained {
		t.Errorf("a misclassified message was not trained: %v %v", trained, err)
	}
}

// TestReinforceUntrain: messages trained again by the train-until-no-error passes are
// reversed exactly by untraining (every count), by moving them to the other class, and
// after a reopen of the SQLite store.
func TestReinforceUntrain(t *testing.T) {
	ctx := context.Background()
	eachStore(t, func(t *testing.T, s Store) {
		r := rand.New(rand.NewPCG(5, 6))
		c := newTrained(t, s, r)
		before, btot := snapshot(t, s)
		// messages of words from both vocabularies and nothing unique: they score
		// in between, so the passes reinforce them
		var ups []Update
		for i := 0; i < 20; i++ {
			var toks []uint64
			for _, w := range []string{"viagra", "winner", "casino", "meeting", "project", "review"}[i%3:][:3] {
				toks = append(toks, HashToken(w))
			}
			ups = append(ups, Update{Class: Class(1 + i%2), Digest: uint64(1000 + i), Tokens: toks})
		}
		if _, err := s.Apply(ctx, ups); err != nil {
			t.Fatal(err)
		}
		n, err := c.Reinforce(ctx, ups)
		if err != nil {
			t.Fatal(err)
		}
		if n < len(ups) {
			t.Fatalf("reinforced %d times, want at least %d", n, len(ups))
		}
		_, mid := snapshot(t, s)
		if mid.Spam+mid.Ham != btot.Spam+btot.Ham+uint32(len(ups)+n) {
			t.Errorf("totals %v after %d trainings and %d reinforcements from %v", mid, len(ups), n, btot)
		}
		// move one to the other class: every count moves
		mv := ups[0]
		mv.Class = Spam + Ham - mv.Class
		if out, _ := s.Apply(ctx, []Update{mv}); out[0] != Relearned {
			t.Errorf("relearn: %v", out)
		}
		if sq, ok := s.(*SQLiteStore); ok {
			path := sq.Path()
			sq.Close()
			if s, err = OpenSQLite(ctx, path, SQLiteOptions{}); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
		}
		if pg, ok := s.(*PostgresStore); ok {
			pg.Close()
			s = openPG(t, pg.dsn, PostgresOptions{})
		}
		for _, u := range ups {
			u.Untrain = true
			if out, err := s.Apply(ctx, []Update{u}); err != nil || out[0] != Applied {
				t.Fatalf("untrain: %v %v", out, err)
			}
		}
		checkRestored(t, s, before, btot)
	})
}
