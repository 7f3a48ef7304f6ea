package route_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/delivery/route"
	"github.com/portcullis-mail/portcullis/internal/smtpdtest"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

var quiet = slog.New(slog.DiscardHandler)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRouter(t *testing.T, cfg route.Config) *route.Router {
	t.Helper()
	cfg.Logger = quiet
	r, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParse(t *testing.T) {
	text := `# a comment
postmaster: root
root:   alice,
	bob@example.org
  # a comment inside a continuation
	"carol smith"@example.org
"sales team": dave, erin@example.net
`
	got, err := route.Parse(strings.NewReader(text), route.Aliases, "aliases")
	if err != nil {
		t.Fatal(err)
	}
	want := []route.Entry{
		{Key: "postmaster", Values: []string{"root"}, Line: 2},
		{Key: "root", Values: []string{"alice", "bob@example.org", `"carol smith"@example.org`}, Line: 3},
		{Key: "sales team", Values: []string{"dave", "erin@example.net"}, Line: 7},
	}
	if !slices.EqualFunc(got, want, func(a, b route.Entry) bool {
		return a.Key == b.Key && a.Line == b.Line && slices.Equal(a.Values, b.Values)
	}) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	table := "Alice@Example.TEST  alice@store.example.test, alice-archive@example.test\n@example.test catchall@example.test\r\n"
	got, err = route.Parse(strings.NewReader(table), route.Table, "virtual")
	if err != nil || len(got) != 2 || got[0].Key != "alice@example.test" || len(got[0].Values) != 2 || got[1].Key != "@example.test" {
		t.Fatalf("table: %+v %v", got, err)
	}

	for text, msg := range map[string]string{
		"  leading continuation\n":               "x:1: continuation line without a preceding entry",
		"a b\nA c\n":                             "x:2: duplicate key \"a\"",
		"lonely\n":                               "x:1: key \"lonely\" without a value",
		"a \"unterminated\n":                     "x:1: key \"a\": unterminated quote",
		"a b\nc d\x00\n":                         "x:2: NUL byte",
		"a " + strings.Repeat("b", 70000) + "\n": "line longer than",
	} {
		_, err := route.Parse(strings.NewReader(text), route.Table, "x")
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%.30q) = %v, want %q", text, err, msg)
		}
	}
	if _, err := route.Parse(strings.NewReader("no colon here\n"), route.Aliases, "a"); err == nil {
		t.Error("alias without colon accepted")
	}
}

func setup(t *testing.T) (*route.Router, string) {
	dir := t.TempDir()
	cfg := route.Config{
		LocalDomains:   []string{"example.test", "Other.Test."},
		VirtualDomains: []string{"virtual.test"},
		Aliases: writeFile(t, dir, "aliases", `postmaster: root
root: alice, bob
staff: root, carol@example.net
loop1: loop2
loop2: loop1
self: self, alice
remote: friend@elsewhere.test
`),
		VirtualAliases: writeFile(t, dir, "virtual", `info@example.test   alice@example.test, sales@example.test
sales@example.test  bob@example.test
@virtual.test       catchall@example.test
support@virtual.test  team@example.test
team@example.test   alice, staff@example.test
`),
		RecipientCanonical: writeFile(t, dir, "rcanon", `old@example.test  alice@example.test
@legacy.test      @example.test
`),
		SenderCanonical: writeFile(t, dir, "scanon", "alice@example.test  Alice.Smith@example.test\n"),
		Transport: writeFile(t, dir, "transport", `other.test        lmtp:unix:/run/dovecot/lmtp
bob@example.test  lmtp:[10.0.0.5]:24
.partner.test     smtp:[gw.partner.test]:2525
partner.test      smtp:gw.partner.test
disabled@example.test  error:5.2.1 mailbox disabled
`),
		LocalUsers: []string{"alice@example.test", "bob@example.test", "carol@example.test", "catchall@example.test", "x@other.test"},
	}
	return newRouter(t, cfg), dir
}

func TestExpand(t *testing.T) {
	r, _ := setup(t)
	ctx := context.Background()
	for rcpt, want := range map[string][]string{
		"alice@example.test":      {"alice@example.test"},
		"Postmaster@Example.test": {"alice@example.test", "bob@example.test"},
		"root+tag@example.test":   {"alice@example.test", "bob@example.test"},
		"staff@example.test":      {"alice@example.test", "bob@example.test", "carol@example.net"},
		"info@example.test":       {"alice@example.test", "bob@example.test"},
		"anything@virtual.test":   {"catchall@example.test"},
		"support@virtual.test":    {"alice@example.test", "bob@example.test", "carol@example.net"},
		"self@example.test":       {"self@example.test", "alice@example.test"},
		"old@example.test":        {"alice@example.test"},
		"bob@legacy.test":         {"bob@example.test"},
		"remote@example.test":     {"friend@elsewhere.test"},
		"someone@elsewhere.test":  {"someone@elsewhere.test"},
	} {
		got, err := r.Expand(ctx, rcpt)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Expand(%s) = %v %v, want %v", rcpt, got, err, want)
		}
	}
	_, err := r.Expand(ctx, "loop1@example.test")
	var re *route.ResolveError
	if !errors.As(err, &re) || re.Temporary || !strings.HasPrefix(re.Reply, "554 5.4.6 alias loop") {
		t.Errorf("loop: %v", err)
	}
}

func TestRoute(t *testing.T) {
	r, _ := setup(t)
	ctx := context.Background()
	for rcpt, want := range map[string]string{
		"alice@example.test":    "local",
		"bob@example.test":      "lmtp:[10.0.0.5]:24",
		"x@other.test":          "lmtp:unix:/run/dovecot/lmtp",
		"a@partner.test":        "smtp:gw.partner.test",
		"a@mail.partner.test":   "smtp:[gw.partner.test]:2525",
		"a@elsewhere.test":      "smtp:elsewhere.test",
		"disabled@example.test": "error",
	} {
		d, err := r.Route(ctx, rcpt)
		if err != nil || d.Dest() != want || d.Rcpt != rcpt {
			t.Errorf("Route(%s) = %+v %v, want %s", rcpt, d, err, want)
		}
	}
	if d, _ := r.Route(ctx, "disabled@example.test"); d.Reply != "550 5.2.1 mailbox disabled" {
		t.Errorf("error transport reply %q", d.Reply)
	}
	if _, err := r.Route(ctx, "nobody@virtual.test"); !errors.Is(err, route.ErrUnknown) {
		t.Errorf("unmatched virtual domain address: %v", err)
	}

	ds, err := r.Resolve(ctx, "postmaster@example.test")
	if err != nil || len(ds) != 2 || ds[0].Dest() != "local" || ds[1].Dest() != "lmtp:[10.0.0.5]:24" || ds[1].Original != "postmaster@example.test" || ds[1].Rcpt != "bob@example.test" {
		t.Errorf("Resolve(postmaster) = %+v %v", ds, err)
	}

	// A relay host and a local transport.
	r2 := newRouter(t, route.Config{LocalDomains: []string{"example.test"}, RelayHost: "[smtp.isp.test]:587", LocalTransport: "lmtp:127.0.0.1:24"})
	if d, _ := r2.Route(ctx, "a@elsewhere.test"); d.Dest() != "smtp:[smtp.isp.test]:587" {
		t.Errorf("relay host: %+v", d)
	}
	if d, _ := r2.Route(ctx, "a@example.test"); d.Dest() != "lmtp:127.0.0.1:24" {
		t.Errorf("local transport: %+v", d)
	}
}

func TestRewriteSender(t *testing.T) {
	r, _ := setup(t)
	for from, want := range map[string]string{"alice@example.test": "Alice.Smith@example.test", "": "", "x@elsewhere.test": "x@elsewhere.test"} {
		if got, err := r.RewriteSender(context.Background(), from); err != nil || got != want {
			t.Errorf("RewriteSender(%q) = %q %v, want %q", from, got, err, want)
		}
	}
}

func TestValid(t *testing.T) {
	r, _ := setup(t)
	ctx := context.Background()
	for rcpt, want := range map[string]bool{
		"alice@example.test":      true,
		"alice+news@example.test": true,
		"ALICE@EXAMPLE.TEST":      true,
		"postmaster@example.test": true, // alias
		"info@example.test":       true, // virtual alias
		"old@example.test":        true, // canonical to a user
		"disabled@example.test":   true, // known, fails at delivery with its reply
		"nobody@example.test":     false,
		"x@other.test":            true,
		"y@other.test":            false,
		"any@virtual.test":        true, // catch-all
		"a@elsewhere.test":        true, // not ours to judge
	} {
		if got, err := r.Valid(ctx, rcpt); err != nil || got != want {
			t.Errorf("Valid(%s) = %v %v, want %v", rcpt, got, err, want)
		}
	}

	// A user database as the source of truth; its failure is an error, not a "no".
	dbErr := errors.New("db down")
	down := false
	r2 := newRouter(t, route.Config{LocalDomains: []string{"example.test"}, LocalUserExists: func(ctx context.Context, a string) (bool, error) {
		if down {
			return false, dbErr
		}
		return a == "dave@example.test", nil
	}})
	if ok, err := r2.Valid(ctx, "dave+x@example.test"); !ok || err != nil {
		t.Errorf("dave: %v %v", ok, err)
	}
	if ok, err := r2.Valid(ctx, "eve@example.test"); ok || err != nil {
		t.Errorf("eve: %v %v", ok, err)
	}
	down = true
	if _, err := r2.Valid(ctx, "dave@example.test"); !errors.Is(err, dbErr) {
		t.Errorf("db down: %v", err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "virtual", "a@example.test b@example.test\n")
	r, err := route.New(route.Config{LocalDomains: []string{"example.test"}, VirtualAliases: p, CheckInterval: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	expand := func() []string {
		got, err := r.Expand(ctx, "a@example.test")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := expand(); !slices.Equal(got, []string{"b@example.test"}) {
		t.Fatalf("before: %v", got)
	}
	writeFile(t, dir, "virtual", "a@example.test c@example.test, d@example.test\n")
	future := time.Now().Add(time.Minute)
	os.Chtimes(p, future, future)
	time.Sleep(5 * time.Millisecond)
	if got := expand(); !slices.Equal(got, []string{"c@example.test", "d@example.test"}) {
		t.Fatalf("after a change: %v", got)
	}
	// A broken file keeps the previous contents; Reload reports it.
	writeFile(t, dir, "virtual", "a@example.test c@example.test\nbroken\n")
	os.Chtimes(p, future.Add(time.Minute), future.Add(time.Minute))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "virtual:2") {
		t.Fatalf("Reload of a broken map: %v", err)
	}
	if got := expand(); !slices.Equal(got, []string{"c@example.test", "d@example.test"}) {
		t.Fatalf("after a broken change: %v", got)
	}
}

func TestMissingMapIsTemporary(t *testing.T) {
	r, err := route.New(route.Config{LocalDomains: []string{"example.test"}, Aliases: "/nonexistent/aliases", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Valid(context.Background(), "x@example.test")
	var re *route.ResolveError
	if !errors.As(err, &re) || !re.Temporary {
		t.Fatalf("Valid with a missing map: %v", err)
	}
	if _, err := r.Expand(context.Background(), "x@example.test"); err == nil {
		t.Fatal("Expand with a missing map succeeded")
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]route.Config{
		"transport":  {LocalTransport: "pigeon:coop"},
		"local user": {LocalDomains: []string{"a.test"}, LocalUsers: []string{"x@b.test"}},
		"both":       {LocalDomains: []string{"a.test"}, VirtualDomains: []string{"a.test"}},
	} {
		if _, err := route.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, aliases := range []string{"x: |/usr/bin/prog\n", "x: /var/mail/x\n", "x: :include:/etc/list\n"} {
		r, _ := route.New(route.Config{LocalDomains: []string{"a.test"}, Aliases: writeFile(t, dir, "aliases", aliases), Logger: quiet})
		if err := r.Reload(); err == nil {
			t.Errorf("aliases %q accepted", aliases)
		}
	}
	r, _ := route.New(route.Config{Transport: writeFile(t, dir, "transport", "a.test pigeon:x\n"), Logger: quiet})
	if err := r.Reload(); err == nil {
		t.Error("unknown transport in the map accepted")
	}
}

// TestSMTPRecipientValidation plugs the router into the SMTP server: an unknown local
// recipient is refused with 550 5.1.1 during the dialogue.
func TestSMTPRecipientValidation(t *testing.T) {
	r, _ := setup(t)
	var queued [][]string
	srv := smtpdtest.Start(t, smtpd.Config{
		Hostname: "mx.example.test", DataDir: t.TempDir(),
		LocalDomains: []string{"example.test", "other.test", "virtual.test"},
		Listeners:    []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX}},
	}, smtpd.Deps{Spool: smtpdtest.Spool(func(env spool.Envelope) { queued = append(queued, env.To) }), Recipients: r, Logger: quiet})

	c := smtpdtest.Dial(t, srv, "mx")
	if err := c.Mail("a@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("postmaster@example.test", nil); err != nil {
		t.Fatalf("alias refused: %v", err)
	}
	err := c.Rcpt("nobody@example.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("unknown user: %v, want 550 5.1.1", err)
	}
	if err := c.Rcpt("anyone@virtual.test", nil); err != nil {
		t.Fatalf("catch-all refused: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(queued) != 1 || !slices.Equal(queued[0], []string{"postmaster@example.test", "anyone@virtual.test"}) {
		t.Fatalf("queued %v", queued)
	}
}

// Lookups go on while the maps are rewritten and reloaded (run with -race).
func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "virtual", "a@example.test b@example.test\n")
	r := newRouter(t, route.Config{LocalDomains: []string{"example.test"}, VirtualAliases: p, CheckInterval: time.Microsecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errs := make(chan error, 4)
	for range 3 {
		go func() {
			for ctx.Err() == nil {
				got, err := r.Expand(context.Background(), "a@example.test")
				if err != nil || len(got) != 1 || (got[0] != "b@example.test" && got[0] != "c@example.test") {
					errs <- fmt.Errorf("Expand = %v %v", got, err)
					return
				}
			}
			errs <- nil
		}()
	}
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			target := []string{"b", "c"}[i%2]
			tmp := p + ".tmp"
			os.WriteFile(tmp, []byte("a@example.test "+target+"@example.test\n"), 0o644)
			os.Rename(tmp, p) // atomic, as an admin's editor or postmap would
			if i%5 == 0 {
				r.Reload()
			}
		}
		errs <- nil
	}()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
