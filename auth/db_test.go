package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// testParams keep hashing cheap in tests (the defaults cost 64 MiB per hash).
var testParams = Argon2Params{Memory: 64 * bytesize.KiB, Iterations: 1, Parallelism: 1}

var quiet = slog.New(slog.DiscardHandler)

func openTestDB(t *testing.T, path string) *DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "users.db")
	}
	db, err := OpenDBConfig(DBConfig{Path: path, Argon2: testParams, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestDBLifecycle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "users.db")
	db := openTestDB(t, path)

	if err := db.Add(ctx, "Alice@Example.ORG", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := db.Add(ctx, "alice@example.org", "other"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	if err := db.Add(ctx, "not an address", "pw"); !errors.Is(err, address.ErrInvalid) {
		t.Fatalf("bad address: %v", err)
	}
	if err := db.Add(ctx, "bob@example.org", ""); err == nil {
		t.Fatal("empty password accepted")
	}
	if err := db.Add(ctx, "bob@example.org", "a\x00b"); err == nil {
		t.Fatal("NUL in password accepted")
	}
	if err := db.Add(ctx, "bob@example.org", "bob pw"); err != nil {
		t.Fatal(err)
	}

	got, err := db.Authenticate(ctx, "ALICE@example.org", "correct horse", loopback)
	if err != nil || got != "alice@example.org" {
		t.Fatalf("Authenticate = %q, %v", got, err)
	}
	for _, c := range []struct {
		user, pw string
		want     error
	}{
		{"alice@example.org", "Correct horse", ErrInvalid},
		{"alice@example.org", "", ErrInvalid},
		{"alice@example.org", strings.Repeat("x", MaxPasswordLen+1), ErrInvalid},
		{"carol@example.org", "correct horse", ErrUnknownUser},
		{"alice", "correct horse", ErrUnknownUser}, // no default domain
		{"", "x", ErrUnknownUser},
	} {
		if got, err := db.Authenticate(ctx, c.user, c.pw, loopback); !errors.Is(err, c.want) || got != "" {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want %v", c.user, c.pw, got, err, c.want)
		}
	}
	// A wrong password for a known user is not ErrUnknownUser (Chain stops there).
	if _, err := db.Authenticate(ctx, "alice@example.org", "nope", loopback); errors.Is(err, ErrUnknownUser) {
		t.Fatal("wrong password reported as unknown user")
	}

	if err := db.SetPassword(ctx, "alice@example.org", "new pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.org", "correct horse", loopback); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old password after passwd: %v", err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.org", "new pw", loopback); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := db.SetPassword(ctx, "carol@example.org", "x"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("passwd of unknown user: %v", err)
	}

	users, err := db.List(ctx)
	if err != nil || len(users) != 2 || users[0].Address != "alice@example.org" || users[1].Address != "bob@example.org" || users[0].Scheme != "argon2id" {
		t.Fatalf("List = %+v, %v", users, err)
	}
	if ok, err := db.Exists(ctx, "BOB@example.org"); !ok || err != nil {
		t.Fatalf("Exists(bob) = %v, %v", ok, err)
	}
	if err := db.Delete(ctx, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, "bob@example.org"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("second delete: %v", err)
	}
	if ok, _ := db.Exists(ctx, "bob@example.org"); ok {
		t.Fatal("bob exists after delete")
	}
	if _, err := db.Authenticate(ctx, "bob@example.org", "bob pw", loopback); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("deleted user: %v", err)
	}

	// Persistence: a new handle on the same file sees the same users; the file is
	// private to its owner.
	db.Close()
	db2 := openTestDB(t, path)
	if got, err := db2.Authenticate(ctx, "alice@example.org", "new pw", loopback); err != nil || got != "alice@example.org" {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users.db mode %v, %v", st.Mode(), err)
	}
}

func TestDBDefaultDomain(t *testing.T) {
	ctx := context.Background()
	db, err := OpenDBConfig(DBConfig{Path: filepath.Join(t.TempDir(), "u.db"), Argon2: testParams, DefaultDomain: "Example.ORG", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Add(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Authenticate(ctx, "Alice", "pw", loopback); err != nil || got != "alice@example.org" {
		t.Fatalf("bare name: %q, %v", got, err)
	}
	if got, err := db.Authenticate(ctx, "alice@example.org", "pw", loopback); err != nil || got != "alice@example.org" {
		t.Fatalf("full name: %q, %v", got, err)
	}
}

// TestDBTwoHandles is a CLI beside a running server: two handles (two *sql.DB, as two
// processes would have) on one file, writing and authenticating concurrently.
func TestDBTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	server, cli := openTestDB(t, path), openTestDB(t, path)
	if err := cli.Add(ctx, "alice@example.org", "pw0"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Add(2)
	go func() { // the CLI adds users and changes alice's password
		defer wg.Done()
		for i := range 20 {
			if err := cli.Add(ctx, fmt.Sprintf("u%d@example.org", i), "pw"); err != nil {
				errs <- err
			}
			if err := cli.SetPassword(ctx, "alice@example.org", fmt.Sprintf("pw%d", i%2)); err != nil {
				errs <- err
			}
		}
	}()
	go func() { // the server authenticates meanwhile
		defer wg.Done()
		for range 40 {
			_, err0 := server.Authenticate(ctx, "alice@example.org", "pw0", loopback)
			_, err1 := server.Authenticate(ctx, "alice@example.org", "pw1", loopback)
			if err0 != nil && err1 != nil && !(errors.Is(err0, ErrInvalid) && errors.Is(err1, ErrInvalid)) {
				errs <- fmt.Errorf("server: %v / %v", err0, err1)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The server sees what the CLI wrote without reopening.
	users, err := server.List(ctx)
	if err != nil || len(users) != 21 {
		t.Fatalf("server sees %d users, %v", len(users), err)
	}
	if got, err := server.Authenticate(ctx, "u7@example.org", "pw", loopback); err != nil || got != "u7@example.org" {
		t.Fatalf("server auth of CLI-added user: %q, %v", got, err)
	}
}

func TestHashFormat(t *testing.T) {
	h, err := HashPassword("secret", Argon2Params{})
	if err != nil {
		t.Fatal(err)
	}
	// $argon2id$v=19$m=65536,t=1,p=1$<22 chars salt>$<43 chars hash>
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" || parts[3] != "m=65536,t=1,p=1" || len(parts[4]) != 22 || len(parts[5]) != 43 {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPassword("secret", Argon2Params{})
	if h == h2 {
		t.Fatal("salt not random")
	}
	ok, rehash, err := VerifyPassword(h, "secret", Argon2Params{})
	if !ok || rehash || err != nil {
		t.Fatalf("verify = %v %v %v", ok, rehash, err)
	}
	ok, _, err = VerifyPassword(h, "Secret", Argon2Params{})
	if ok || err != nil {
		t.Fatalf("wrong password verified: %v %v", ok, err)
	}
	// The same hash under other parameters needs a rehash.
	if _, rehash, _ := VerifyPassword(h, "secret", Argon2Params{Iterations: 2}); !rehash {
		t.Fatal("no rehash for changed parameters")
	}
	// The reference implementation's published vector (phc-winner-argon2 README:
	// echo -n password | argon2 somesalt -t 2 -m 16 -p 4 -l 24), argon2i.
	const ref = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
	for _, h := range []string{ref, "{ARGON2I}" + ref} {
		if ok, rehash, err := VerifyPassword(h, "password", Argon2Params{}); !ok || !rehash || err != nil {
			t.Fatalf("reference vector %q: %v %v %v", h, ok, rehash, err)
		}
	}
}

// TestHashFromSlappasswd verifies a hash made by another implementation: OpenLDAP's
// argon2 password module (libargon2), as slappasswd writes it.
func TestHashFromSlappasswd(t *testing.T) {
	slappasswd := testenv.Program(t, "slappasswd")
	out, err := exec.Command(slappasswd, "-o", "module-path=/usr/lib/ldap", "-o", "module-load=argon2", "-h", "{ARGON2}", "-s", "pässword").Output()
	if err != nil {
		testenv.Unavailable(t, "slappasswd with the argon2 module (Debian slapd): %v", err)
	}
	h := strings.TrimSpace(strings.TrimPrefix(string(out), "{ARGON2}"))
	if ok, _, err := VerifyPassword(h, "pässword", Argon2Params{}); !ok || err != nil {
		t.Fatalf("slappasswd hash %q: %v %v", h, ok, err)
	}
	if ok, _, _ := VerifyPassword(h, "password", Argon2Params{}); ok {
		t.Fatal("wrong password verified")
	}
}

func TestHashHostileInput(t *testing.T) {
	for _, h := range []string{
		"", "$", "plain", "$argon2id$", "$argon2d$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=16$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8", // 4 TiB
		"$argon2id$v=19$m=64,t=100000,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=64,t=1,p=0$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=64,t=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=64,t=1,p=1$!!$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8",
		"$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$", "$2y$99$xx", "{SHA512-CRYPT}$6$abc$def",
		"$2a$31$abcdefghijklmnopqrstuu5Ue9vH0Ee3QxbWvq8MjGjE0Kq3qBrXy", // cost 31: days
	} {
		ok, _, err := VerifyPassword(h, "password", Argon2Params{})
		if ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v", h, ok, err)
		}
		if CheckHash(h) == nil {
			t.Errorf("CheckHash(%q) accepted", h)
		}
	}
}

func TestHashUpgradeOnLogin(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	get := func(addr string) string {
		var h string
		if err := db.db.QueryRow(`SELECT password FROM users WHERE address = ?`, addr).Scan(&h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	// Old argon2id parameters.
	old, _ := HashPassword("pw", Argon2Params{Memory: 32 * bytesize.KiB, Iterations: 2, Parallelism: 1})
	// A bcrypt hash from Dovecot ({BLF-CRYPT}, $2y$ as doveadm pw writes it).
	bc, _ := bcrypt.GenerateFromPassword([]byte("bpw"), bcrypt.MinCost)
	dovecot := "{BLF-CRYPT}$2y$" + string(bc[4:])
	for addr, h := range map[string]string{"old@example.org": old, "bc@example.org": dovecot} {
		if err := db.AddHash(ctx, addr, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddHash(ctx, "x@example.org", "{PLAIN}pw"); err == nil {
		t.Fatal("AddHash accepted a plain password")
	}
	users, _ := db.List(ctx)
	if users[0].Scheme != "bcrypt" || users[1].Scheme != "argon2id" {
		t.Fatalf("schemes: %+v", users)
	}

	// A wrong password changes nothing.
	if _, err := db.Authenticate(ctx, "old@example.org", "nope", loopback); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if get("old@example.org") != old {
		t.Fatal("hash changed on failure")
	}
	for addr, pw := range map[string]string{"old@example.org": "pw", "bc@example.org": "bpw"} {
		before := get(addr)
		if _, err := db.Authenticate(ctx, addr, pw, loopback); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		after := get(addr)
		if after == before || !strings.HasPrefix(after, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("%s not upgraded: %q", addr, after)
		}
		if _, err := db.Authenticate(ctx, addr, pw, loopback); err != nil {
			t.Fatalf("%s after upgrade: %v", addr, err)
		}
		if get(addr) != after {
			t.Fatalf("%s re-hashed although current", addr)
		}
	}
}

// TestUnknownUserCostsAHash checks the timing-safe path without timing: an unknown
// user, a malformed name and a wrong password each verify exactly one hash with the
// current parameters, so they take as long as each other.
func TestUnknownUserCostsAHash(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	var n atomic.Int32
	db.verifyHook = func() { n.Add(1) }
	if err := db.Add(ctx, "alice@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice@example.org", "nobody@example.org", "not an address"} {
		n.Store(0)
		db.Authenticate(ctx, user, "wrong", loopback)
		if n.Load() != 1 {
			t.Errorf("%q: %d verifications, want 1", user, n.Load())
		}
	}
	// The dummy hash uses the configured parameters.
	if !strings.HasPrefix(db.dummyHash(), "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("dummy hash %q", db.dummyHash())
	}
}

func TestHashingIsBounded(t *testing.T) {
	db, err := OpenDBConfig(DBConfig{Path: filepath.Join(t.TempDir(), "u.db"), Argon2: testParams, MaxConcurrentHashes: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.Add(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	db.sem <- struct{}{} // all slots busy
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Authenticate(cctx, "a@example.org", "pw", loopback); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with no free slot: %v", err)
	}
	<-db.sem
	if _, err := db.Authenticate(ctx, "a@example.org", "pw", loopback); err != nil {
		t.Fatal(err)
	}
}

func TestDBUnavailable(t *testing.T) {
	db := openTestDB(t, "")
	db.Close()
	if _, err := db.Authenticate(context.Background(), "a@example.org", "pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("closed database: %v", err)
	}
}

func TestEnsureUser(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	pw, created, err := db.EnsureUser(ctx, "postmaster@example.test")
	if err != nil || !created || len(pw) < 20 {
		t.Fatalf("EnsureUser = %q, %v, %v", pw, created, err)
	}
	if got, err := db.Authenticate(ctx, "postmaster@example.test", pw, loopback); err != nil || got != "postmaster@example.test" {
		t.Fatalf("login with generated password: %q, %v", got, err)
	}
	pw2, created, err := db.EnsureUser(ctx, "Postmaster@example.test")
	if err != nil || created || pw2 != "" {
		t.Fatalf("second EnsureUser = %q, %v, %v", pw2, created, err)
	}
	if _, err := db.Authenticate(ctx, "postmaster@example.test", pw, loopback); err != nil {
		t.Fatal("password changed by second EnsureUser")
	}
}

func TestCLICommands(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	var out strings.Builder
	stdin := func(s string) PasswordInput {
		return PasswordInput{Stdin: true, In: strings.NewReader(s), Prompt: io.Discard}
	}
	if err := AddUserCmd(ctx, db, "Alice@Example.org", stdin("s3cret pass\n"), &out); err != nil {
		t.Fatal(err)
	}
	if err := AddUserCmd(ctx, db, "alice@example.org", stdin("x\n"), &out); !errors.Is(err, ErrUserExists) {
		t.Fatalf("add twice: %v", err)
	}
	if err := AddUserCmd(ctx, db, "bob@example.org", stdin("\n"), &out); err == nil {
		t.Fatal("empty password from stdin accepted")
	}
	if err := AddUserCmd(ctx, db, "bob@example.org", stdin("crlf pw\r\n"), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.org", "s3cret pass", loopback); err != nil {
		t.Fatalf("password from stdin: %v", err)
	}
	if _, err := db.Authenticate(ctx, "bob@example.org", "crlf pw", loopback); err != nil {
		t.Fatalf("CRLF-terminated password: %v", err)
	}
	// Without --password-stdin the input must be a terminal.
	if err := AddUserCmd(ctx, db, "carol@example.org", PasswordInput{In: strings.NewReader("pw\n")}, &out); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("prompt from a non-terminal: %v", err)
	}
	if err := PasswdCmd(ctx, db, "alice@example.org", stdin("new one"), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice@example.org", "new one", loopback); err != nil {
		t.Fatalf("after passwd: %v", err)
	}
	if err := PasswdCmd(ctx, db, "carol@example.org", stdin("x"), &out); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("passwd unknown: %v", err)
	}
	if err := DelUserCmd(ctx, db, "bob@example.org", &out); err != nil {
		t.Fatal(err)
	}
	if err := DelUserCmd(ctx, db, "bob@example.org", &out); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("del twice: %v", err)
	}
	out.Reset()
	if err := ListUsersCmd(ctx, db, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ADDRESS") || !strings.HasPrefix(lines[1], "alice@example.org ") || !strings.Contains(lines[1], "argon2id") {
		t.Fatalf("list output:\n%s", out.String())
	}
}

// TestVerifyCache: the cache is on by default; a password changed or a user deleted
// through a second handle on the same file (what `portcullis user passwd|del` does
// beside a running server) makes the old password fail at the very next login;
// failures are never cached; entries expire and the cache is bounded.
func TestVerifyCache(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	db := openTestDB(t, path) // defaults: cache on
	if db.cache == nil || db.cache.ttl != DefaultVerifyCacheTTL || db.cache.size != DefaultVerifyCacheEntries {
		t.Fatalf("cache not on by default: %+v", db.cache)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db.cache.now = func() time.Time { return now }
	var n atomic.Int32
	db.verifyHook = func() { n.Add(1) }
	auth := func(user, pw string) (verified bool, err error) {
		n.Store(0)
		_, err = db.Authenticate(ctx, user, pw, loopback)
		return n.Load() > 0, err
	}
	if err := db.Add(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	if v, err := auth("a@example.org", "pw"); !v || err != nil {
		t.Fatalf("first login: verified=%v %v", v, err)
	}
	if v, err := auth("A@example.org", "pw"); v || err != nil {
		t.Fatalf("second login: verified=%v %v", v, err)
	}
	for range 2 { // failures are not cached: each one costs a hash
		if v, err := auth("a@example.org", "pW"); !v || !errors.Is(err, ErrInvalid) {
			t.Fatalf("wrong password: verified=%v %v", v, err)
		}
	}
	// `portcullis user passwd` in another process: the old password fails at once.
	cli := openTestDB(t, path)
	var out strings.Builder
	if err := PasswdCmd(ctx, cli, "a@example.org", PasswordInput{Stdin: true, In: strings.NewReader("new\n")}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := auth("a@example.org", "pw"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old password after passwd: %v", err)
	}
	if v, err := auth("a@example.org", "new"); !v || err != nil {
		t.Fatalf("new password: verified=%v %v", v, err)
	}
	if v, _ := auth("a@example.org", "new"); v {
		t.Fatal("new password not cached")
	}
	// Changed back to the old password: a new salt, so still no stale hit.
	if err := cli.SetPassword(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	if v, err := auth("a@example.org", "pw"); !v || err != nil {
		t.Fatalf("password changed back: verified=%v %v", v, err)
	}
	if _, err := auth("a@example.org", "new"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("second password after change back: %v", err)
	}
	// Expiry.
	now = now.Add(DefaultVerifyCacheTTL + time.Second)
	if v, err := auth("a@example.org", "pw"); !v || err != nil {
		t.Fatalf("after TTL: verified=%v %v", v, err)
	}
	if v, _ := auth("a@example.org", "pw"); v {
		t.Fatal("not cached again after TTL")
	}
	// `portcullis user del` in another process: refused at once although cached.
	if err := DelUserCmd(ctx, cli, "a@example.org", &out); err != nil {
		t.Fatal(err)
	}
	if _, err := auth("a@example.org", "pw"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("deleted user: %v", err)
	}
	// Re-created with the same password: verified afresh, not from the old entry.
	if err := cli.Add(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	if v, err := auth("a@example.org", "pw"); !v || err != nil {
		t.Fatalf("re-created user: verified=%v %v", v, err)
	}
	// The key is a MAC, never the password.
	for k := range db.cache.entries {
		if strings.Contains(string(k[:]), "pw") {
			t.Fatal("password in a cache key")
		}
	}
	// Bounded.
	db.cache.size = 2
	for i := range 10 {
		db.cache.add(fmt.Sprint(i), "h", "p")
	}
	if len(db.cache.entries) > 2 {
		t.Fatalf("%d cache entries", len(db.cache.entries))
	}
}

func TestVerifyCacheOff(t *testing.T) {
	ctx := context.Background()
	db, err := OpenDBConfig(DBConfig{Path: filepath.Join(t.TempDir(), "users.db"), Argon2: testParams, VerifyCacheTTL: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n atomic.Int32
	db.verifyHook = func() { n.Add(1) }
	if err := db.Add(ctx, "a@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := db.Authenticate(ctx, "a@example.org", "pw", loopback); err != nil {
			t.Fatal(err)
		}
	}
	if db.cache != nil || n.Load() != 3 {
		t.Fatalf("cache %v, %d verifications of 3 logins", db.cache, n.Load())
	}
}

// TestVerifyCacheMemory measures the default bound's memory (README: about 10 MB).
func TestVerifyCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	c := newVerifyCache(time.Hour, 0)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range DefaultVerifyCacheEntries {
		c.add(fmt.Sprint(i), "$argon2id$v=19$m=65536,t=1,p=1$c2FsdA$aGFzaA", "password")
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	mb := float64(m1.HeapAlloc-m0.HeapAlloc) / 1e6
	t.Logf("%d entries: %.1f MB", len(c.entries), mb)
	if mb > 16 {
		t.Errorf("%d entries take %.1f MB", len(c.entries), mb)
	}
	runtime.KeepAlive(c)
}

// TestPasswordLengthCapAtLogin: a password longer than MaxPasswordLen (256 bytes) is
// refused at login even when an imported SHA-crypt hash would match it, before any
// hashing: that hash's cost grows with the password's length. 256 bytes still log in.
func TestPasswordLengthCapAtLogin(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	long := strings.Repeat("p", 300)
	edge := strings.Repeat("q", 256)
	for addr, pw := range map[string]string{"long@example.org": long, "edge@example.org": edge} {
		h, err := shaCrypt(pw, "$6$rounds=5000$capsalt$")
		if err != nil {
			t.Fatal(err)
		}
		if ok, _, err := VerifyPassword("{SHA512-CRYPT}"+h, pw, testParams); !ok || err != nil {
			t.Fatalf("the hash does not verify: %v %v", ok, err)
		}
		if err := db.AddHash(ctx, addr, "{SHA512-CRYPT}"+h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Authenticate(ctx, "long@example.org", long, loopback); !errors.Is(err, ErrInvalid) {
		t.Errorf("a 300-byte password logged in: %v", err)
	}
	if got, err := db.Authenticate(ctx, "edge@example.org", edge, loopback); err != nil || got != "edge@example.org" {
		t.Errorf("a 256-byte password: %q %v", got, err)
	}
	if err := db.SetPassword(ctx, "edge@example.org", long); err == nil {
		t.Error("a 300-byte password was set")
	}
}
