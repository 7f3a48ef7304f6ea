package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/spool"
)

const evilMsg = "From: \"><img src=x onerror=alert(1)> <x@evil.test>\r\nSubject: =?utf-8?q?caf=C3=A9?= <script>alert(1)</script>\r\nMessage-ID: <m1@evil.test>\r\n\r\nbody\r\n"

func newAreaB(b *testing.B) (*Area, *spool.Spool) {
	sp, err := spool.Open(filepath.Join(b.TempDir(), "queue"), spool.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	a, err := New(Config{}, sp)
	if err != nil {
		b.Fatal(err)
	}
	return a, sp
}

func quarantinedB(b *testing.B, sp *spool.Spool, to ...string) {
	if _, err := sp.Enqueue(context.Background(), spool.Envelope{From: "x@evil.test", To: to, Quarantine: true, ReceivedAt: time.Now()}, strings.NewReader(evilMsg)); err != nil {
		b.Fatal(err)
	}
}

func newArea(t *testing.T) (*Area, *spool.Spool) {
	t.Helper()
	a, sp, _ := newAreaDecided(t)
	return a, sp
}

// newAreaDecided also returns the decisions the area reported ("id rcpt action").
func newAreaDecided(t *testing.T) (*Area, *spool.Spool, *[]string) {
	t.Helper()
	var decided []string
	sp, err := spool.Open(filepath.Join(t.TempDir(), "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	a, err := New(Config{Decided: func(id, rcpt, action, _ string) { decided = append(decided, id+" "+rcpt+" "+action) }}, sp)
	if err != nil {
		t.Fatal(err)
	}
	return a, sp, &decided
}

func quarantined(t *testing.T, sp *spool.Spool, to ...string) string {
	t.Helper()
	id, err := sp.Enqueue(context.Background(), spool.Envelope{From: "x@evil.test", To: to, Quarantine: true, Score: 7.5, ReceivedAt: time.Now()}, strings.NewReader(evilMsg))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReleaseAndDeletePerRecipient(t *testing.T) {
	ctx := context.Background()
	a, sp, decided := newAreaDecided(t)
	id := quarantined(t, sp, "alice@example.test", "bob@example.test")
	if _, err := sp.Enqueue(ctx, spool.Envelope{From: "a@b.test", To: []string{"alice@example.test"}}, strings.NewReader(evilMsg)); err != nil {
		t.Fatal(err) // accepted mail: not in the quarantine
	}

	alice := func(r string) bool { return r == "alice@example.test" }
	items, err := a.List(ctx, alice)
	if err != nil || len(items) != 1 {
		t.Fatalf("alice's list = %+v, %v; want her one item", items, err)
	}
	it := items[0]
	if it.ID != id || it.Subject != "café <script>alert(1)</script>" || it.MessageID != "<m1@evil.test>" || it.Score != 7.5 {
		t.Errorf("item = %+v", it)
	}
	if _, err := a.Get(id, "carol@example.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get for a recipient not on the message: %v, want ErrNotFound", err)
	}

	newID, err := a.Release(ctx, id, "alice@example.test", "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	env, msg, err := sp.Open(newID)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(io.NewSectionReader(msg, 0, msg.Size()))
	msg.Close()
	if env.Quarantine || len(env.To) != 1 || env.To[0] != "alice@example.test" || string(raw) != evilMsg {
		t.Errorf("released copy: env %+v, body %q", env, raw)
	}
	if _, err := a.Release(ctx, id, "alice@example.test", "alice@example.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second release: %v, want ErrNotFound", err)
	}
	all, _ := a.List(ctx, nil)
	if len(all) != 1 || all[0].Rcpt != "bob@example.test" {
		t.Fatalf("after alice's release the quarantine holds %+v, want bob's item", all)
	}
	if err := a.Delete(id, "bob@example.test", "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Envelope(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("message still queued after every recipient decided: %v", err)
	}
	want := []string{id + " alice@example.test released", id + " bob@example.test deleted"}
	if fmt.Sprint(*decided) != fmt.Sprint(want) {
		t.Errorf("decided %v, want %v", *decided, want)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	a, sp := newArea(t)
	id := quarantined(t, sp, "alice@example.test")
	if n, err := a.Prune(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Prune now: %d, %v", n, err)
	}
	if n, err := a.Prune(ctx, time.Now().Add(DefaultLifetime+time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune after the lifetime: %d, %v", n, err)
	}
	if _, err := sp.Envelope(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("expired message still queued: %v", err)
	}
}

func TestLists(t *testing.T) {
	l, err := OpenLists(context.Background(), statedb.Config{Path: filepath.Join(t.TempDir(), "lists.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exerciseLists(t, l)
}

// The same lists in the PostgreSQL database several nodes share: what one node's page
// sets, another node's rules read; of two nodes finding a digest due, one sends it.
func TestListsPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	ctx := context.Background()
	var nodes []*Lists
	for range 2 {
		l, err := OpenLists(ctx, statedb.Config{Postgres: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		nodes = append(nodes, l)
	}
	exerciseLists(t, nodes[0])
	if err := nodes[0].Set(ctx, "carol@example.test", "@ads.example", Block); err != nil {
		t.Fatal(err)
	}
	if got, err := nodes[1].Lookup(ctx, "carol@example.test", "x@ads.example"); err != nil || got != Block {
		t.Errorf("the other node reads %q, %v", got, err)
	}
	if err := nodes[1].SetDigest(ctx, "carol@example.test", DigestDaily); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(48 * time.Hour)
	due, err := nodes[0].DueDigests(ctx, later)
	if err != nil || len(due) != 1 || due[0].User != "carol@example.test" {
		t.Fatalf("due: %+v %v", due, err)
	}
	var claims int
	for _, n := range nodes {
		for _, u := range due {
			if u.User != "carol@example.test" {
				continue
			}
			ok, err := n.ClaimDigest(ctx, u.User, u.LastSent, later)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				claims++
			}
		}
	}
	if claims != 1 {
		t.Errorf("carol's digest claimed %d times by two nodes, want once", claims)
	}
}

func exerciseLists(t *testing.T, l *Lists) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Set(ctx, "alice@example.test", "Bank@Bank.EXAMPLE", Allow))
	must(l.Set(ctx, "alice@example.test", "@spam.example", Block))
	for _, c := range []struct{ user, sender, want string }{
		{"alice@example.test", "bank@bank.example", Allow},
		{"alice@example.test", "anyone@SPAM.example", Block},
		{"alice@example.test", "other@example.org", ""},
		{"alice@example.test", "", ""},
		{"bob@example.test", "bank@bank.example", ""}, // lists are per user
	} {
		if got, err := l.Lookup(ctx, c.user, c.sender); err != nil || got != c.want {
			t.Errorf("Lookup(%s, %q) = %q, %v; want %q", c.user, c.sender, got, err, c.want)
		}
	}
	must(l.Set(ctx, "alice@example.test", "bank@bank.example", Block)) // switches kind
	if got, _ := l.Lookup(ctx, "alice@example.test", "bank@bank.example"); got != Block {
		t.Errorf("after switching: %q", got)
	}
	for _, bad := range []string{"", "nodomain", "@", "a b@c", "@bad domain"} {
		if err := l.Set(ctx, "alice@example.test", bad, Allow); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if f, _ := l.Digest(ctx, "alice@example.test"); f != DigestNever {
		t.Errorf("default digest %q", f)
	}
	must(l.SetDigest(ctx, "alice@example.test", DigestDaily))
	due, _ := l.DueDigests(ctx, time.Now().Add(25*time.Hour))
	if len(due) != 1 || due[0].User != "alice@example.test" {
		t.Errorf("due = %+v", due)
	}
	ok, err := l.ClaimDigest(ctx, "alice@example.test", due[0].LastSent, time.Now().Add(25*time.Hour))
	must(err)
	if !ok {
		t.Error("a due digest was not claimed")
	}
	if due, _ := l.DueDigests(ctx, time.Now().Add(26*time.Hour)); len(due) != 0 {
		t.Errorf("due right after sending: %+v", due)
	}
	if err := l.SetDigest(ctx, "alice@example.test", "hourly"); err == nil {
		t.Error("hourly digest accepted")
	}
}

func Example() {
	dir, _ := os.MkdirTemp("", "quarantine-example")
	defer os.RemoveAll(dir)
	sp, _ := spool.Open(filepath.Join(dir, "queue"), spool.Config{})
	defer sp.Close()
	q, _ := New(Config{}, sp)
	ctx := context.Background()
	id, _ := sp.Enqueue(ctx, spool.Envelope{From: "s@example.org", To: []string{"u@example.test"}, Quarantine: true},
		strings.NewReader("Subject: hello\r\n\r\nhi\r\n"))
	items, _ := q.List(ctx, func(rcpt string) bool { return rcpt == "u@example.test" })
	fmt.Println(len(items), items[0].Subject)
	_, err := q.Release(ctx, id, "u@example.test", "u@example.test")
	fmt.Println(err)
	// Output:
	// 1 hello
	// <nil>
}

// FuzzNormalizeSender: a list entry is an address or @domain without spaces, angle
// brackets or line breaks, or an error; never a panic.
func FuzzNormalizeSender(f *testing.F) {
	for _, s := range []string{"a@b.example", "@Example.ORG", "", "@", "a b@c", "x@[192.0.2.1]", "\"q uoted\"@x.test", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeSender(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(n, " \t\r\n<>") || !strings.Contains(n, "@") {
			t.Fatalf("NormalizeSender(%q) = %q", s, n)
		}
	})
}

// A released message is what its recipient says is not spam: a real Bayes database
// learns it as ham (Config.Ham), once per release.
func TestReleaseTrainsHam(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := bayes.OpenSQLite(ctx, filepath.Join(dir, "bayes.db"), bayes.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl, err := bayes.New(bayes.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "queue"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var rcpts []string
	a, err := New(Config{Ham: func(ctx context.Context, rcpt string, msg io.Reader) error {
		rcpts = append(rcpts, rcpt)
		raw, err := io.ReadAll(msg)
		if err != nil {
			return err
		}
		_, err = cl.Train(ctx, raw, bayes.Ham)
		return err
	}}, sp)
	if err != nil {
		t.Fatal(err)
	}
	id := quarantined(t, sp, "alice@example.test", "bob@example.test")
	if _, err := a.Release(ctx, id, "alice@example.test", "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(id, "bob@example.test", "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	stats, err := st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Totals.Ham != 1 || stats.Totals.Spam != 0 || fmt.Sprint(rcpts) != "[alice@example.test]" {
		t.Errorf("after one release and one deletion: totals %+v, learned for %v; want one ham for alice", stats.Totals, rcpts)
	}
}
