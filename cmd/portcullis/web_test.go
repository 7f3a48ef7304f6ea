package main

import (
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/quarantine"
)

// The page speaks TLS, with smtp.tls's certificate (here the self-signed one), as soon as
// http.addr is not loopback; on loopback it stays plain HTTP.
func TestWebTLSBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte("data_dir: "+filepath.Join(dir, "data")+"\nhttp: { addr: \"0.0.0.0:8025\" }\n"), 0o600))
	cfg, err := config.Load(path, "")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o700))
	priv := &privileges{sockets: map[string][]net.Listener{}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wrapped, err := webTLS(cfg, priv, ln)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls="+map[bool]string{true: "yes", false: "no"}[r.TLS != nil])
	}), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(wrapped) }()
	defer srv.Close()

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "tls=yes", string(body))
	require.GreaterOrEqual(t, resp.TLS.Version, uint16(tls.VersionTLS12))
	// Plain HTTP gets Go's TLS server's 400 "client sent an HTTP request to an HTTPS
	// server", never the handler.
	if resp, err := hc.Get("http://" + ln.Addr().String() + "/"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.NotContains(t, string(body), "tls=")
	}

	cfg.HTTP.Addr = "127.0.0.1:8025"
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer plain.Close()
	same, err := webTLS(cfg, priv, plain)
	require.NoError(t, err)
	require.Same(t, plain, same, "a loopback listener is wrapped")
}

// A recipient's sender lists are those of the users it delivers to: an extension is
// dropped, an alias reads its members' lists, and a block wins over an allow.
func TestRcptLists(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	aliases := filepath.Join(dir, "aliases")
	require.NoError(t, os.WriteFile(aliases, []byte("team: alice, bob\n"), 0o600))
	cfg := config.Default(dir)
	cfg.Routing.RecipientDelimiter = "+"
	lists, listed, err := openSenderLists(cfg)
	require.NoError(t, err)
	defer lists.Close()
	listed.router, err = route.New(route.Config{LocalDomains: []string{"example.test"}, Aliases: aliases, RecipientDelimiter: "+"})
	require.NoError(t, err)
	require.NoError(t, lists.Set(ctx, "alice@example.test", "@news.example", quarantine.Allow))
	require.NoError(t, lists.Set(ctx, "bob@example.test", "@news.example", quarantine.Block))
	require.NoError(t, lists.Set(ctx, "alice@example.test", "friend@far.example", quarantine.Allow))
	for _, c := range []struct{ rcpt, sender, want string }{
		{"alice@example.test", "x@news.example", "allow"},
		{"Alice+lists@example.test", "x@news.example", "allow"},
		{"bob@example.test", "x@news.example", "block"},
		{"team@example.test", "x@news.example", "block"},
		{"team@example.test", "friend@far.example", "allow"},
		{"bob@example.test", "friend@far.example", ""},
		{"alice@example.test", "", ""},
	} {
		got, err := listed.Listed(ctx, c.rcpt, c.sender)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%s from %s", c.rcpt, c.sender)
	}
	// The page stores an admin's allow or block under these owners.
	for rcpt, want := range map[string][]string{
		"Alice+lists@example.test": {"alice@example.test"},
		"team@example.test":        {"alice@example.test", "bob@example.test"},
	} {
		got, err := listed.ListOwners(ctx, rcpt)
		require.NoError(t, err)
		require.Equal(t, want, got, rcpt)
	}
}

// The page keys a user's lists by the canonical name the login returns (A-label domain,
// NFC lower case); a recipient written with a U-label domain or upper case finds them.
func TestRcptListsCanonicalOwner(t *testing.T) {
	ctx := t.Context()
	cfg := config.Default(t.TempDir())
	cfg.Routing.RecipientDelimiter = "+"
	lists, listed, err := openSenderLists(cfg)
	require.NoError(t, err)
	defer lists.Close()
	owner, err := address.Normalize("Jörg@Bücher.example")
	require.NoError(t, err)
	require.NoError(t, lists.Set(ctx, owner, "@spam.example", quarantine.Block))
	for _, rcpt := range []string{"jörg@bücher.example", "JÖRG+x@BÜCHER.example", "jörg@xn--bcher-kva.example"} {
		got, err := listed.Listed(ctx, rcpt, "x@spam.example")
		require.NoError(t, err)
		require.Equal(t, quarantine.Block, got, "recipient %s", rcpt)
	}
}

// The digest's links name a host a mail client can reach, not the wildcard the page
// listens on.
func TestDefaultWebURL(t *testing.T) {
	cfg := config.Default(t.TempDir())
	cfg.Hostname = "mail.example.test"
	for addr, want := range map[string]string{
		":8025":          "https://mail.example.test:8025",
		"0.0.0.0:8025":   "https://mail.example.test:8025",
		"[::]:8025":      "https://mail.example.test:8025",
		"127.0.0.1:8025": "http://127.0.0.1:8025",
		"[::1]:8025":     "http://[::1]:8025",
		"192.0.2.1:443":  "https://192.0.2.1:443",
	} {
		cfg.HTTP.Addr = addr
		require.Equal(t, want, defaultWebURL(cfg), "http.addr %s", addr)
	}
}

// The page's and the quarantine's state follow directory.postgres, the one place that
// names the shared database: SQLite files under the data dir without it.
func TestStateConfig(t *testing.T) {
	cfg := config.Default(t.TempDir())
	require.Equal(t, filepath.Join(cfg.DataDir, "web.db"), stateConfig(cfg, "web.db").Path)
	require.Empty(t, stateConfig(cfg, "web.db").Postgres)
	cfg.Directory.Postgres = "postgres://db.example/mail"
	require.Equal(t, "postgres://db.example/mail", stateConfig(cfg, "quarantine.db").Postgres)
}

// A release trains the Bayes database as ham only when the rules use the bayes policy:
// then the message lands in DATA/bayes/global.db (the database Junk moves train).
func TestReleaseTrainer(t *testing.T) {
	cfg := config.Default(t.TempDir())
	logger := slog.New(slog.DiscardHandler)
	require.Nil(t, releaseTrainer(cfg, map[string]policy.Policy{}, logger), "no bayes policy, no training")
	bp, err := bayes.NewPolicy(bayes.PolicyConfig{DB: bayes.DefaultDBPath(cfg.DataDir)}, bayes.Deps{})
	require.NoError(t, err)
	ham := releaseTrainer(cfg, map[string]policy.Policy{"bayes": bp}, logger)
	require.NotNil(t, ham)
	require.NoError(t, ham(t.Context(), "alice@example.test", strings.NewReader("From: a@b.example\r\nSubject: the quarterly figures\r\n\r\nhere they are\r\n")))
	st, err := bayes.OpenSQLite(t.Context(), bayes.DefaultDBPath(cfg.DataDir), bayes.SQLiteOptions{})
	require.NoError(t, err)
	defer st.Close()
	stats, err := st.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint32(1), stats.Totals.Ham)
	require.Zero(t, stats.Totals.Spam)
}

// With bayes.postgres, a release and a Junk move train the site-wide database, which
// every node classifies with; a database down at the first move is tried again at the
// next one.
func TestReleaseTrainerPostgres(t *testing.T) {
	srv := pgtest.StartServer(t)
	cfg := config.Default(t.TempDir())
	cfg.Bayes.Postgres = pgtest.NewDatabase(t, srv.DSN)
	logger := slog.New(slog.DiscardHandler)
	bp, err := bayes.NewPolicy(bayes.PolicyConfig{DB: bayes.DefaultDBPath(cfg.DataDir)}, bayes.Deps{Postgres: cfg.Bayes.Postgres})
	require.NoError(t, err)
	ham := releaseTrainer(cfg, map[string]policy.Policy{"bayes": bp}, logger)
	junk := junkTrainer(cfg, logger)
	msg := "From: a@b.example\r\nSubject: the quarterly figures\r\n\r\nhere they are\r\n"
	srv.Stop()
	require.ErrorContains(t, ham(t.Context(), "alice@example.test", strings.NewReader(msg)), "postgres")
	srv.Restart()
	// tried again after the shared store's back-off (bayesStores: 1 s, doubling)
	require.Eventually(t, func() bool { return ham(t.Context(), "alice@example.test", strings.NewReader(msg)) == nil },
		20*time.Second, 100*time.Millisecond)
	require.NoError(t, junk(t.Context(), "bob@example.test", strings.NewReader("From: x@spam.example\r\nSubject: cheap pills\r\n\r\nbuy now\r\n"), true))
	st, err := bayes.OpenPostgres(t.Context(), cfg.Bayes.Postgres, bayes.PostgresOptions{RefreshInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	stats, err := st.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, bayes.Totals{Spam: 1, Ham: 1}, stats.Totals)
	require.NoFileExists(t, bayes.DefaultDBPath(cfg.DataDir))
}

// The Junk and release trainer refuses a database trained by another tokenizer version
// (as the policy does), instead of adding counts that do not match to it: with the
// site-wide database, a node of another version during a rolling upgrade.
func TestJunkTrainerFingerprint(t *testing.T) {
	cfg := config.Default(t.TempDir())
	path := bayes.DefaultDBPath(cfg.DataDir)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	st, err := bayes.OpenSQLite(t.Context(), path, bayes.SQLiteOptions{})
	require.NoError(t, err)
	c, err := bayes.New(bayes.Config{}, st)
	require.NoError(t, err)
	_, err = c.Train(t.Context(), []byte("From: a@b.example\r\nSubject: hello\r\n\r\nthe figures\r\n"), bayes.Ham)
	require.NoError(t, err)
	require.NoError(t, st.SetMeta(t.Context(), "tokenizer", "another-version"))
	require.NoError(t, st.Close())

	junk := junkTrainer(cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, junk(t.Context(), "bob@example.test", strings.NewReader("From: x@spam.example\r\nSubject: cheap pills\r\n\r\nbuy now\r\n"), true), "tokenizer")
	st, err = bayes.OpenSQLite(t.Context(), path, bayes.SQLiteOptions{})
	require.NoError(t, err)
	defer st.Close()
	stats, err := st.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, bayes.Totals{Ham: 1}, stats.Totals)
}
