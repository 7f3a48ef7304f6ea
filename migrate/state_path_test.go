package migrate_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-mail/portcullis/migrate"
)

// The state of user "a#b" lives in the user's directory ".../a#b/": the path must reach
// SQLite whole, not cut at '#' or '?' by its URI parsing (the state of "a#b" and "a?b"
// would be one file ".../a", opened without its pragmas).
func TestStatePathWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	for _, user := range []string{"a#b", "a?b", "a%3fb"} {
		p := filepath.Join(dir, user, "migrate-state.sqlite")
		st, err := migrate.OpenState(p)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		st.Close()
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: the state is not at its path: %v", user, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Errorf("a file %s was made of the path", filepath.Join(dir, "a"))
	}
}
