package web

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// dbValues returns every text value of the state database's tables: what a copy of
// web.db (or of the shared PostgreSQL tables) gives whoever holds it.
func dbValues(t *testing.T, st *State) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, q := range []string{`SELECT name, key FROM web_keys`, `SELECT id, "user", csrf, stamp, flash FROM web_sessions`, `SELECT id, '' FROM web_tickets_used`} {
		rows, err := st.db.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if v.String != "" {
					out = append(out, v.String)
				}
			}
		}
		rows.Close()
	}
	return out
}

// signWith signs t with key alone, as whoever holds key would.
func signWith(key []byte, t ticket) string {
	s := &Server{keys: &keys{check: []ticketKey{{key: key}}}}
	return s.sign(t)
}

// A copy of the state database signs no ticket: every value it holds, taken as the key
// (as it is, or hex-decoded as the ticket key used to be kept), makes a ticket the page
// refuses, and the session's CSRF token is nowhere in it.
func TestTicketFromDatabaseCopyRefused(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "minted", "alice@example.test")
	// A real ticket and a session, so the tables are not empty.
	good := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	c := r.client()
	c.login("bob@example.test")
	if c.csrf == "" {
		t.Fatal("no CSRF token on the page")
	}
	vals := dbValues(t, r.srv.deps.State)
	if len(vals) == 0 {
		t.Fatal("the state database is empty")
	}
	stamp, err := r.srv.ticketStamp(context.Background(), "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if v == c.csrf {
			t.Errorf("the database holds the session's CSRF token")
		}
		cands := [][]byte{[]byte(v)}
		if d, err := hex.DecodeString(v); err == nil {
			cands = append(cands, d)
		}
		for _, key := range cands {
			tk := signWith(key, ticket{user: "alice@example.test", id: id, rcpt: "alice@example.test",
				exp: time.Now().Add(time.Hour).Unix(), nonce: randomToken()[:22], stamp: stamp})
			if code, body, _ := r.client().openTicket(tk); code != http.StatusForbidden || strings.Contains(body, "minted") {
				t.Fatalf("a ticket signed with the database's value %q: %d", v, code)
			}
		}
	}
	if code, body, _ := r.client().openTicket(good); code != 200 || !strings.Contains(body, "minted") {
		t.Fatalf("the page's own ticket: %d", code)
	}
	fi, err := os.Stat(r.srv.cfg.SecretFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the secret file: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

// The upgrade from a version that kept the ticket key in web.db (and the CSRF tokens):
// the key moves to the new file as an old key, the links it signed keep working until
// they expire, the database (file and WAL bytes included) no longer holds it, and a
// copy of the old database signs no link that expires later.
func TestSecretUpgradeFromDatabaseKey(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	id := r.quarantine("x@spam.test", "upgraded", "alice@example.test")
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "web.db")
	st, err := OpenState(ctx, statedb.Config{Path: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	// What the older version left: its key, and a session with a stored CSRF token.
	old := bytes.Repeat([]byte{0xa7, 0x3c}, 16)
	oldHex := hex.EncodeToString(old)
	const oldCSRF = "stored-csrf-token-of-an-old-session-0123456789"
	if _, err := st.db.Exec(ctx, `INSERT INTO web_keys (name, key) VALUES ('ticket', ?)`, oldHex); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(ctx, `INSERT INTO web_sessions (id, "user", admin, csrf, stamp, created, used) VALUES ('x', 'bob@example.test', 0, ?, '', ?, ?)`,
		oldCSRF, time.Now().Unix(), time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	stamp, err := r.srv.ticketStamp(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	mailed := signWith(old, ticket{user: "alice@example.test", id: id, rcpt: "alice@example.test", exp: time.Now().Add(time.Hour).Unix(), nonce: randomToken()[:22], stamp: stamp})
	late := signWith(old, ticket{user: "alice@example.test", id: id, rcpt: "alice@example.test", exp: time.Now().Add(100 * 24 * time.Hour).Unix(), nonce: randomToken()[:22], stamp: stamp})

	secret := filepath.Join(dir, "web.secret")
	start := func() *Server {
		t.Helper()
		s, err := New(Config{SecretFile: secret, TicketLifetime: 72 * time.Hour},
			Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, Quarantine: r.area, Lists: r.lists, State: st, Credentials: stamps{r.users.DB}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	r.srv = s
	ts := r.ts
	r.ts = httptestServer(t, s)
	defer func() { r.ts = ts }()

	if code, body, _ := r.client().openTicket(mailed); code != 200 || !strings.Contains(body, "upgraded") {
		t.Fatalf("a link mailed before the upgrade: %d", code)
	}
	if code, _, _ := r.client().openTicket(late); code != http.StatusForbidden {
		t.Errorf("a link signed with the old key that expires after its until=: %d, want 403", code)
	}
	var n int
	if err := st.db.QueryRow(ctx, `SELECT count(*) FROM web_keys WHERE name = 'ticket'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the old key is still in the database: %d (%v)", n, err)
	}
	for _, f := range []string{dbPath, dbPath + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(oldHex)) || bytes.Contains(b, []byte(oldCSRF)) {
			t.Errorf("%s still holds the old key or CSRF token in its bytes", filepath.Base(f))
		}
	}
	content, err := os.ReadFile(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(content), oldHex+" until=") {
		t.Errorf("the old key is not in the file with until=:\n%s", content)
	}
	// The next start reads the file and changes nothing.
	s2 := start()
	if !bytes.Equal(s2.keys.sign(), s.keys.sign()) || len(s2.keys.check) != 2 {
		t.Errorf("the second start has other keys")
	}
	if after, _ := os.ReadFile(secret); !bytes.Equal(after, content) {
		t.Errorf("the second start rewrote the file")
	}
}

// Rotation: a new key first and the old one below keeps the old links valid; the old
// line deleted, they are refused.
func TestSecretRotation(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "rotated", "alice@example.test")
	oldKey := r.srv.keys.sign()
	tk := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	tk2 := r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour))
	newKey := strings.Repeat("5e", 32)
	write := func(content string) {
		if err := os.WriteFile(r.srv.cfg.SecretFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		r.srv = r.restarted(Config{})
		r.ts = httptestServer(t, r.srv)
	}
	write(newKey + "\n" + hex.EncodeToString(oldKey) + "\n")
	if code, body, _ := r.client().openTicket(tk); code != 200 || !strings.Contains(body, "rotated") {
		t.Fatalf("a link of the previous key during the rotation: %d", code)
	}
	if want, _ := hex.DecodeString(newKey); !bytes.Equal(r.srv.keys.sign(), want) {
		t.Errorf("the new key does not sign")
	}
	write(newKey + "\n")
	if code, _, _ := r.client().openTicket(tk2); code != http.StatusForbidden {
		t.Errorf("a link of a deleted key: %d, want 403", code)
	}
}

// A key file that cannot be used is a clear error at start, never a silent new key.
func TestSecretFileErrors(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := strings.Repeat("ab", 32) + "\n"
	for _, c := range []struct{ name, path, want string }{
		{"unreadable", filepath.Join(notDir, "web.secret"), "cannot be read"},
		{"a directory", dir, "not a regular file"},
		{"world-readable", write("world", good, 0o644), "may be read by every user"},
		{"short key", write("short", "abcdef\n", 0o600), "fewer than 32"},
		{"empty", write("empty", "# nothing\n", 0o600), "holds no key"},
		{"bad option", write("opt", strings.TrimSpace(good)+" until=soon\n", 0o600), "until=RFC3339"},
		{"signing key with until", write("until", strings.TrimSpace(good)+" until=2030-01-01T00:00:00Z\n", 0o600), "may not have until="},
	} {
		_, err := New(Config{SecretFile: c.path}, Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, State: r.srv.deps.State})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := New(Config{}, Deps{Auth: r.srv.deps.Auth, Owner: r.srv.deps.Owner, State: r.srv.deps.State}); err == nil {
		t.Error("no secret_file: no error")
	}
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// A start whose file lacks the key that signed until now (a replaced file, or nodes
// with different files) says so; a rotation, which keeps that key, does not.
func TestSecretKeyIDWarns(t *testing.T) {
	r := newRig(t)
	old := hex.EncodeToString(r.srv.keys.sign())
	start := func(content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "web.secret")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		r.srv = r.restarted(Config{SecretFile: p, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		return logs.String()
	}
	if logs := start(strings.Repeat("c3", 32) + "\n" + old + "\n"); strings.Contains(logs, "not in secret_file") {
		t.Errorf("a rotation warned:\n%s", logs)
	}
	if logs := start(strings.Repeat("d4", 32) + "\n"); !strings.Contains(logs, "not in secret_file") {
		t.Errorf("a file without the key that signed until now: no warning:\n%s", logs)
	}
}

// A leaked key: kept below a new one without until=, it still accepts the links its
// holder signs (so docs/operations.md says to delete it at once); with an until= in the
// past it accepts none and the start says to delete the line; deleted, none.
func TestSecretLeakedKey(t *testing.T) {
	r := newRig(t)
	id := r.quarantine("x@spam.test", "leaked", "alice@example.test")
	leaked, newKey := strings.Repeat("1f", 32), strings.Repeat("5e", 32)
	var logs testenv.LockedBuffer
	write := func(content string) {
		if err := os.WriteFile(r.srv.cfg.SecretFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		r.srv = r.restarted(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		r.ts = httptestServer(t, r.srv)
	}
	write(leaked + "\n")
	// What whoever holds the leaked key can sign (each link works once).
	var forged []string
	for range 3 {
		forged = append(forged, r.ticket("alice@example.test", id, "alice@example.test", time.Now().Add(time.Hour)))
	}
	write(newKey + "\n" + leaked + "\n")
	if code, _, _ := r.client().openTicket(forged[0]); code != http.StatusOK {
		t.Errorf("a link of a leaked key kept without until=: %d; the test shows the risk the docs warn of", code)
	}
	if strings.Contains(logs.String(), "past its until=") {
		t.Errorf("a warning for a key without until=:\n%s", logs.String())
	}
	write(newKey + "\n" + leaked + " until=" + time.Now().Add(-time.Minute).UTC().Format(time.RFC3339) + "\n")
	if code, _, _ := r.client().openTicket(forged[1]); code != http.StatusForbidden {
		t.Errorf("a link of a key whose until= has passed: %d, want 403", code)
	}
	if !strings.Contains(logs.String(), "past its until=") {
		t.Errorf("no warning for a key past its until=:\n%s", logs.String())
	}
	write(newKey + "\n")
	if code, _, _ := r.client().openTicket(forged[2]); code != http.StatusForbidden {
		t.Errorf("a link of the deleted leaked key: %d, want 403", code)
	}
}
