package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestScripts(t *testing.T) {
	ctx := context.Background()
	st, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.Open(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	sc := u.Scripts()
	lim := ScriptLimits{MaxScripts: 2, MaxSize: 100}

	if name, _, err := sc.Active(ctx); err != nil || name != "" {
		t.Fatalf("Active on no scripts = %q, %v", name, err)
	}
	if err := sc.Put(ctx, "one", []byte("keep;"), lim); err != nil {
		t.Fatal(err)
	}
	if err := sc.Put(ctx, "two", []byte(strings.Repeat("#", 101)), lim); !errors.Is(err, ErrScriptTooBig) {
		t.Fatalf("oversized Put = %v", err)
	}
	if err := sc.Put(ctx, "two", []byte("discard;"), lim); err != nil {
		t.Fatal(err)
	}
	if err := sc.Put(ctx, "three", []byte("keep;"), lim); !errors.Is(err, ErrTooManyScripts) {
		t.Fatalf("third Put = %v", err)
	}
	// Replacing an existing script does not count as one more.
	if err := sc.Put(ctx, "two", []byte("discard; stop;"), lim); err != nil {
		t.Fatal(err)
	}
	if err := sc.CheckSpace(ctx, "three", 1, lim); !errors.Is(err, ErrTooManyScripts) {
		t.Fatalf("CheckSpace = %v", err)
	}
	if err := sc.SetActive(ctx, "nope"); !errors.Is(err, ErrNoScript) {
		t.Fatalf("SetActive nope = %v", err)
	}
	if err := sc.SetActive(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if err := sc.SetActive(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	name, text, err := sc.Active(ctx)
	if err != nil || name != "two" || string(text) != "discard; stop;" {
		t.Fatalf("Active = %q %q %v", name, text, err)
	}
	if err := sc.Delete(ctx, "two"); !errors.Is(err, ErrScriptActive) {
		t.Fatalf("Delete active = %v", err)
	}
	if err := sc.Rename(ctx, "two", "one"); !errors.Is(err, ErrScriptExists) {
		t.Fatalf("Rename onto existing = %v", err)
	}
	if err := sc.Rename(ctx, "two", "deux"); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := sc.Active(ctx); name != "deux" {
		t.Fatalf("active after rename = %q", name)
	}
	list, err := sc.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "deux" || !list[0].Active || list[1].Active || list[0].Size != 14 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := sc.Delete(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Get(ctx, "one"); !errors.Is(err, ErrNoScript) {
		t.Fatalf("Get deleted = %v", err)
	}
	if err := sc.SetActive(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := sc.Active(ctx); name != "" {
		t.Fatalf("active after SetActive \"\" = %q", name)
	}

	// A tool beside the server sees and changes the same scripts.
	tool, err := OpenScripts(ctx, st.Config(), "Alice@Example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	if b, err := tool.Get(ctx, "deux"); err != nil || string(b) != "discard; stop;" {
		t.Fatalf("tool Get = %q %v", b, err)
	}
	if err := tool.SetActive(ctx, "deux"); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := sc.Active(ctx); name != "deux" {
		t.Fatalf("server sees active %q", name)
	}
}

func TestScriptNames(t *testing.T) {
	for _, bad := range []string{"", "a\nb", "a\x00", "tab\there", "e\u0301", "a\u2028b", "\u0085", strings.Repeat("x", MaxScriptNameLen+1), "\xff"} {
		if err := CheckScriptName(bad); !errors.Is(err, ErrBadScriptName) {
			t.Errorf("CheckScriptName(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"vacation", "roundcube", "été", "a b/c", strings.Repeat("x", MaxScriptNameLen)} {
		if err := CheckScriptName(good); err != nil {
			t.Errorf("CheckScriptName(%q) = %v", good, err)
		}
	}
}

func TestSieveMemory(t *testing.T) {
	ctx := context.Background()
	sc, err := OpenScripts(ctx, Config{Dir: t.TempDir()}, "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	t0 := time.Unix(1_700_000_000, 0)
	if ok, err := sc.Remembered(ctx, "vacation:x", t0); ok || err != nil {
		t.Fatalf("Remembered before = %v %v", ok, err)
	}
	if err := sc.Remember(ctx, "vacation:x", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := sc.Remembered(ctx, "vacation:x", t0.Add(59*time.Minute)); !ok {
		t.Fatal("forgotten within the period")
	}
	if ok, _ := sc.Remembered(ctx, "vacation:x", t0.Add(time.Hour)); ok {
		t.Fatal("remembered after the period")
	}
	// A later write prunes what expired.
	if err := sc.Remember(ctx, "dup:y", t0.Add(2*time.Hour), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := sc.db.QueryRow(`SELECT count(*) FROM sieve_memory`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("entries after prune = %d %v", n, err)
	}
}
