package quarantine

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/spool"
)

// meetingSpool holds each Enqueue until a second one arrives (or a while passes), so two
// releases racing each other both reach the queue if nothing serialises them.
type meetingSpool struct {
	*spool.Spool
	arrived chan struct{}
	copies  atomic.Int32
}

func (m *meetingSpool) Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	select {
	case m.arrived <- struct{}{}:
	case <-m.arrived:
	case <-time.After(500 * time.Millisecond): // alone: the other caller is waiting on a lock
	}
	m.copies.Add(1)
	return m.Spool.Enqueue(ctx, env, msg)
}

// TestConcurrentReleaseDeliversOnce: two clicks on "Release" (two tabs, a double submit)
// queue one copy; the other gets ErrNotFound. Release and Delete at once do one of them.
func TestConcurrentReleaseDeliversOnce(t *testing.T) {
	ctx := context.Background()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	ms := &meetingSpool{Spool: sp, arrived: make(chan struct{})}
	a, err := New(Config{}, ms)
	if err != nil {
		t.Fatal(err)
	}
	id := quarantined(t, sp, "alice@example.test", "bob@example.test")

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = a.Release(ctx, id, "alice@example.test", "alice@example.test") })
	}
	wg.Wait()
	if n := ms.copies.Load(); n != 1 {
		t.Errorf("two concurrent releases queued %d copies, want 1 (errors %v)", n, errs)
	}
	if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs...), ErrNotFound) {
		t.Errorf("release errors %v, want one nil and one ErrNotFound", errs)
	}

	// Bob's item: a release and a delete at once end in one of the two, never both.
	var relErr, delErr error
	wg.Go(func() { _, relErr = a.Release(ctx, id, "bob@example.test", "bob@example.test") })
	wg.Go(func() { delErr = a.Delete(id, "bob@example.test", "bob@example.test") })
	wg.Wait()
	if (relErr == nil) == (delErr == nil) {
		t.Errorf("release %v and delete %v of one item: want exactly one to succeed", relErr, delErr)
	}
}

// gateSpool holds Enqueue until proceed is closed (or a while passes), after saying it
// entered; Delete can be made to fail.
type gateSpool struct {
	*spool.Spool
	entered, proceed chan struct{}
	deleteErr        error
}

func (g *gateSpool) Enqueue(ctx context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	if g.entered != nil {
		close(g.entered)
		g.entered = nil
		select {
		case <-g.proceed:
		case <-time.After(2 * time.Second):
		}
	}
	return g.Spool.Enqueue(ctx, env, msg)
}

func (g *gateSpool) Delete(id string) error {
	if g.deleteErr != nil {
		return g.deleteErr
	}
	return g.Spool.Delete(id)
}

func newGateArea(t *testing.T) (*Area, *gateSpool, *[]string) {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	g := &gateSpool{Spool: sp}
	var mu sync.Mutex
	var decided []string
	a, err := New(Config{Decided: func(id, rcpt, action, _ string) {
		mu.Lock()
		decided = append(decided, rcpt+" "+action)
		mu.Unlock()
	}}, g)
	if err != nil {
		t.Fatal(err)
	}
	return a, g, &decided
}

// TestPruneDuringRelease: a release in progress when the lifetime runs out ends as a
// release: the copy is queued, Release reports success, and the item is not also logged
// as expired.
func TestPruneDuringRelease(t *testing.T) {
	ctx := context.Background()
	a, g, decided := newGateArea(t)
	id := quarantined(t, g.Spool, "alice@example.test")
	entered := make(chan struct{})
	g.entered, g.proceed = entered, make(chan struct{})

	var relErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, relErr = a.Release(ctx, id, "alice@example.test", "alice@example.test") })
	<-entered
	pruned := make(chan struct{})
	go func() { _, _ = a.Prune(ctx, time.Now().Add(DefaultLifetime+time.Hour)); close(pruned) }()
	select { // without the lock Prune ends here, while the copy is being queued
	case <-pruned:
	case <-time.After(300 * time.Millisecond):
	}
	close(g.proceed)
	wg.Wait()
	<-pruned
	if relErr != nil {
		t.Errorf("release racing the pruning: %v", relErr)
	}
	if len(*decided) != 1 || (*decided)[0] != "alice@example.test released" {
		t.Errorf("decided %v, want only the release", *decided)
	}
}

// TestPruneReportsOnlyWhatItRemoved: an expired message that cannot be removed is still
// quarantined, so it is not reported expired (the decision log would say it was).
func TestPruneReportsOnlyWhatItRemoved(t *testing.T) {
	ctx := context.Background()
	a, g, decided := newGateArea(t)
	quarantined(t, g.Spool, "alice@example.test", "bob@example.test")
	g.deleteErr = errors.New("disk on fire")
	if n, err := a.Prune(ctx, time.Now().Add(DefaultLifetime+time.Hour)); err != nil || n != 0 {
		t.Errorf("Prune = %d, %v; want 0 removed", n, err)
	}
	if len(*decided) != 0 {
		t.Errorf("decided %v for a message still queued", *decided)
	}
	g.deleteErr = nil
	if n, err := a.Prune(ctx, time.Now().Add(DefaultLifetime+time.Hour)); err != nil || n != 1 {
		t.Errorf("Prune = %d, %v; want 1 removed", n, err)
	}
	if len(*decided) != 2 {
		t.Errorf("decided %v, want both recipients expired", *decided)
	}
}

// TestJunkLineDoesNotHideHeader: a line that is no field at the top of the header does
// not blank the page's From and Subject (mail readers still show them, and the rules
// read them past it too).
func TestJunkLineDoesNotHideHeader(t *testing.T) {
	a, sp := newArea(t)
	id, err := sp.Enqueue(context.Background(), spool.Envelope{From: "x@evil.test", To: []string{"alice@example.test"}, Quarantine: true},
		strings.NewReader("junk without a colon\r\nFrom: Pay Pal <x@evil.test>\r\nSubject: =?utf-8?q?urgent_caf=C3=A9?=\r\nMessage-ID: <j@evil.test>\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	it, err := a.Get(id, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if it.HeaderFrom != "Pay Pal <x@evil.test>" || it.Subject != "urgent café" || it.MessageID != "<j@evil.test>" {
		t.Errorf("item %+v: header fields lost after a junk line", it)
	}
}

// TestListsRemoveFolds: an entry goes however its sender is typed, and removing one that
// is not there says so.
func TestListsRemoveFolds(t *testing.T) {
	ctx := context.Background()
	l, err := OpenLists(ctx, statedb.Config{Path: filepath.Join(t.TempDir(), "lists.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Set(ctx, "alice@example.test", "Bank@Bank.EXAMPLE", Allow); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(ctx, "alice@example.test", "BANK@bank.example"); err != nil {
		t.Fatal(err)
	}
	if kind, _ := l.Lookup(ctx, "alice@example.test", "bank@bank.example"); kind != "" {
		t.Errorf("entry still %q after removal", kind)
	}
	if err := l.Remove(ctx, "alice@example.test", "bank@bank.example"); err == nil {
		t.Error("removing an entry that is not there: no error")
	}
}

// TestReleasedCopyIsDatedNow: the queue expires a message MaxLifetime after its
// ReceivedAt (five days by default) without a DSN for a released copy; a message
// released on its tenth day in quarantine must not be queued as ten days old.
func TestReleasedCopyIsDatedNow(t *testing.T) {
	ctx := context.Background()
	a, sp := newArea(t)
	old := time.Now().Add(-10 * 24 * time.Hour)
	id, err := sp.Enqueue(ctx, spool.Envelope{From: "x@evil.test", To: []string{"alice@example.test"}, Quarantine: true, ReceivedAt: old},
		strings.NewReader(evilMsg))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	newID, err := a.Release(ctx, id, "alice@example.test", "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	env, err := sp.Envelope(newID)
	if err != nil {
		t.Fatal(err)
	}
	if env.ReceivedAt.Before(before) {
		t.Errorf("released copy dated %s, before the release (%s): the queue would expire it at once", env.ReceivedAt, before)
	}
}

// TestSubjectInOtherCharsets: encoded words in the charsets mail uses (here ISO-8859-15
// and windows-1251) are decoded, not shown raw.
func TestSubjectInOtherCharsets(t *testing.T) {
	a, sp := newArea(t)
	id, err := sp.Enqueue(context.Background(), spool.Envelope{From: "x@evil.test", To: []string{"alice@example.test"}, Quarantine: true},
		strings.NewReader("From: =?windows-1251?b?z+Xy8A==?= <x@evil.test>\r\nSubject: =?iso-8859-15?q?caf=E9_=A4?=\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	it, err := a.Get(id, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if it.Subject != "café €" || it.HeaderFrom != "Петр <x@evil.test>" {
		t.Errorf("subject %q, from %q: want them decoded", it.Subject, it.HeaderFrom)
	}
}
