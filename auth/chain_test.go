package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChain(t *testing.T) {
	ctx := context.Background()
	local := &fakeAuth{users: map[string]string{"alice": "local-pw", "both": "local-pw"}}
	remote := &fakeAuth{users: map[string]string{"bob": "ldap-pw", "both": "ldap-pw"}}
	c := Chain(local, remote)
	for _, tc := range []struct {
		user, pw string
		want     error
	}{
		{"alice", "local-pw", nil},
		{"bob", "ldap-pw", nil},
		{"both", "local-pw", nil},
		{"both", "ldap-pw", ErrInvalid}, // the first backend knows "both": final
		{"alice", "x", ErrInvalid},
		{"carol", "x", ErrUnknownUser},
	} {
		_, err := c.Authenticate(ctx, tc.user, tc.pw, loopback)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s/%s: %v, want %v", tc.user, tc.pw, err, tc.want)
		}
	}
	// LDAP down: local users still log in; unknown ones get a temporary failure.
	remote.downFrom = true
	if _, err := c.Authenticate(ctx, "alice", "local-pw", loopback); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authenticate(ctx, "bob", "ldap-pw", loopback); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bob with LDAP down: %v", err)
	}
	if _, err := c.Authenticate(ctx, "alice", "bad", loopback); !errors.Is(err, ErrInvalid) {
		t.Fatalf("alice wrong password with LDAP down: %v", err)
	}
}

// TestChainLocalThenLDAP is the shipped assembly: throttling around the local database
// and a real slapd, one authenticator for every protocol.
func TestChainLocalThenLDAP(t *testing.T) {
	ctx := context.Background()
	srv := startSlapd(t)
	db := openTestDB(t, "")
	if err := db.Add(ctx, "local@example.test", "local-pw"); err != nil {
		t.Fatal(err)
	}
	l := newLDAP(t, srv, nil)
	th, clk := newThrottle(t, Chain(db, l), ThrottleConfig{MaxFailuresPerUser: 3})
	if got, err := th.Authenticate(ctx, "local@example.test", "local-pw", ip1); err != nil || got != "local@example.test" {
		t.Fatalf("local: %q, %v", got, err)
	}
	if got, err := th.Authenticate(ctx, "bob", "bob-pw", ip1); err != nil || got != "bob@example.test" {
		t.Fatalf("ldap: %q, %v", got, err)
	}
	for range 3 {
		if _, err := th.Authenticate(ctx, "bob", "guess", ip2); !errors.Is(err, ErrInvalid) {
			t.Fatalf("guess: %v", err)
		}
	}
	// Bob from the guessing network is slowed: its 4s penalty outlasts a short deadline.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := th.Authenticate(short, "bob", "bob-pw", ip2); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after 3 guesses, within a second: %v", err)
	}
	// From elsewhere he is not.
	sleeps := clk.Sleeps()
	if _, err := th.Authenticate(short, "bob", "bob-pw", ip1); err != nil || len(clk.Slept(sleeps)) != 0 {
		t.Fatalf("bob from another network: %v, slept %v", err, clk.Slept(sleeps))
	}
	// With time to wait, the penalty is waited out and bob is in.
	if _, err := th.Authenticate(ctx, "bob", "bob-pw", ip2); err != nil {
		t.Fatalf("after the penalty: %v", err)
	}
}

func TestServiceExists(t *testing.T) {
	ctx := context.Background()
	srv := startSlapd(t)
	db := openTestDB(t, "")
	if err := db.Add(ctx, "local@example.test", "pw"); err != nil {
		t.Fatal(err)
	}
	s := &Service{DB: db, LDAP: newLDAP(t, srv, nil)}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"local@example.test", true},
		{"LOCAL@example.test", true},
		{"bob@example.test", true},   // LDAP mail attribute
		{"alice@example.test", true}, // stored as Alice@Example.TEST
		{"nobody@example.test", false},
		{"*@example.test", false},
		{"a b@example.test", false}, // not a user address
	} {
		ok, err := s.Exists(ctx, tc.addr)
		if ok != tc.want || err != nil {
			t.Errorf("%s: %v, %v; want %v", tc.addr, ok, err, tc.want)
		}
	}
	srv.Stop()
	// Answers are cached for a few seconds; an address never asked needs LDAP.
	if ok, err := s.Exists(ctx, "bob@example.test"); !ok || err != nil {
		t.Fatalf("cached answer: %v, %v", ok, err)
	}
	if _, err := s.Exists(ctx, "carol@example.test"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("LDAP down: %v", err)
	}
	if _, err := s.Exists(ctx, "carol@example.test"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an error was cached: %v", err)
	}
}

// TestCLIProcessBesideServer runs `user add` in another process (this test binary) while
// this one keeps the database open and authenticates, as a server would.
func TestCLIProcessBesideServer(t *testing.T) {
	if os.Getenv("AUTH_TEST_CLI_DB") != "" {
		return // the child's half runs in TestHelperCLI
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	server := openTestDB(t, path)
	if err := server.Add(ctx, "server@example.org", "pw"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCLI$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AUTH_TEST_CLI_DB="+path)
	cmd.Stdin = strings.NewReader("child secret\n")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Authenticate while the child writes.
	for range 20 {
		if _, err := server.Authenticate(ctx, "server@example.org", "pw", loopback); err != nil {
			t.Fatalf("server auth during CLI write: %v", err)
		}
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "user child@example.org added") {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if got, err := server.Authenticate(ctx, "child@example.org", "child secret", loopback); err != nil || got != "child@example.org" {
		t.Fatalf("user added by the other process: %q, %v", got, err)
	}
}

// TestHelperCLI is the child process of TestCLIProcessBesideServer.
func TestHelperCLI(t *testing.T) {
	path := os.Getenv("AUTH_TEST_CLI_DB")
	if path == "" {
		t.Skip("helper process")
	}
	db, err := OpenDBConfig(DBConfig{Path: path, Argon2: testParams, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 10 {
		if err := db.Add(context.Background(), fmt.Sprintf("filler%d@example.org", i), "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddUserCmd(context.Background(), db, "child@example.org", PasswordInput{Stdin: true}, os.Stdout); err != nil {
		t.Fatal(err)
	}
}
