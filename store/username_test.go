package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// User names may hold '#', '?' and '%' (atext of RFC 5322 §3.2.3): each user's index
// must still be its own file in its own directory, not the one SQLite's URI parsing
// would make of the name ("a#b" and "a?b" both opened ".../a").
func TestIndexOfUserNameWithURICharacters(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	users := []string{"a#b@example.org", "a?b@example.org", "a%3fb@example.org"}
	own := map[string]string{users[0]: "Only-1", users[1]: "Only-2", users[2]: "Only-3"}
	for _, name := range users {
		u := open(t, s, name)
		if err := u.Create(ctx, own[name], ""); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, name := range users {
		u := open(t, s, name)
		mbs, err := u.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			if len(mb.Name) > 5 && mb.Name[:5] == "Only-" && mb.Name != own[name] {
				t.Errorf("%s sees another user's mailbox %q", name, mb.Name)
			}
		}
		dir, _ := s.UserDir(name)
		if _, err := os.Stat(filepath.Join(dir, "index.sqlite")); err != nil {
			t.Errorf("%s: its index is not in its directory: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "example.org", "a")); err == nil {
		t.Errorf("a file %s was made of a user name", filepath.Join(s.cfg.Dir, "example.org", "a"))
	}
}

// The sieve scripts live in the user's index too: one user's script must not be
// another's.
func TestScriptsOfUserNameWithURICharacters(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Dir: t.TempDir()}
	a, err := OpenScripts(ctx, cfg, "a#b@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Put(ctx, "mine", []byte("keep;\r\n"), ScriptLimits{}); err != nil {
		t.Fatal(err)
	}
	b, err := OpenScripts(ctx, cfg, "a?b@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if list, err := b.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("a?b's scripts: %v, %v; want none", list, err)
	}
}
