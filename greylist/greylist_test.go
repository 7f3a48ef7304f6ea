package greylist_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/greylist"
	"github.com/portcullis-mail/portcullis/internal/redistest"
	"github.com/portcullis-mail/portcullis/policy"
)

func TestNormalizeSender(t *testing.T) {
	for in, want := range map[string]string{
		"a+b@x":                         "a@x",
		"list-123-bounces+u=y@l":        "list-#-bounces@l",
		"prvs=0123456789=user@b":        "user@b",
		"prvs=user=0123456789@b":        "user@b",
		"prvs=short=other@b":            "other@b",
		"12.34@x":                       "#.#@x",
		"a1b2@x":                        "a1b2@x",
		"":                              "",
		"noat":                          "noat",
		"bounce-42-7@lists.example.org": "bounce-#-#@lists.example.org",
	} {
		if got := greylist.NormalizeSender(in); got != want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", in, got, want)
		}
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTx(ip, from, rcpt string) *policy.Transaction {
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr(ip)})
	tx.Envelope.From = address.Parse(from)
	tx.Rcpt = address.Parse(rcpt)
	return tx
}

// TestPolicy: the results rules see, the header, skipping, allow-lists, max_age and the
// data stage.
func TestPolicy(t *testing.T) {
	clk := &clock{t: time.Unix(t0, 0)}
	p, err := greylist.New(greylist.Config{
		AllowClients:    []string{"203.0.113.0/24", "friends.example", "/^mx[0-9]+\\.partner\\.example$/"},
		AllowRecipients: []string{"postmaster@", "abuse@y.example", "open.example"},
	}, greylist.Deps{Store: greylist.NewMemoryStore(), Hostname: "mx.test", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := newTx("192.0.2.1", "a@x.example", "u@y.example")
	r := p.CheckRcpt(ctx, tx)
	if r.Status != policy.StatusFail || r.Reason != "greylist.greylisted" || r.Facts["greylisted"] != true ||
		r.Facts["reply"] != "451 4.7.1 <u@y.example>: Recipient address rejected: Greylisted, try again in 300 seconds" {
		t.Fatalf("first attempt: %+v", r)
	}
	clk.t = clk.t.Add(301 * time.Second)
	r = p.CheckRcpt(ctx, tx)
	if r.Status != policy.StatusPass || r.Reason != "greylist.passed" || len(r.Headers) != 1 ||
		r.Headers[0].Name != "X-Greylist" || !strings.HasPrefix(r.Headers[0].Value, "delayed 301 seconds by portcullis at mx.test; ") {
		t.Fatalf("retry: %+v", r)
	}
	if r = p.CheckRcpt(ctx, tx); r.Reason != "greylist.known" || len(r.Headers) != 0 {
		t.Fatalf("known: %+v", r)
	}
	// Not seen for longer than max_age: greylisted again.
	clk.t = clk.t.Add(36 * 24 * time.Hour)
	if r = p.CheckRcpt(ctx, tx); r.Reason != "greylist.greylisted" {
		t.Fatalf("after max_age: %+v", r)
	}
	for _, c := range []struct {
		mod  func(tx *policy.Transaction)
		skip string
	}{
		{func(tx *policy.Transaction) { tx.Conn.AuthUser = "joe" }, "authenticated"},
		{func(tx *policy.Transaction) { tx.Conn.Trusted = true }, "trusted"},
		{func(tx *policy.Transaction) { tx.Conn.IP = netip.MustParseAddr("203.0.113.9") }, "client allow-list"},
		{func(tx *policy.Transaction) { tx.Conn.Hostname = "mail.friends.example" }, "client allow-list"},
		{func(tx *policy.Transaction) { tx.Conn.Hostname = "mx12.partner.example" }, "client allow-list"},
		{func(tx *policy.Transaction) { tx.Rcpt = address.Parse("Postmaster@z.example") }, "recipient allow-list"},
		{func(tx *policy.Transaction) { tx.Rcpt = address.Parse("abuse@y.example") }, "recipient allow-list"},
		{func(tx *policy.Transaction) { tx.Rcpt = address.Parse("x@sub.open.example") }, "recipient allow-list"},
	} {
		tx := newTx("198.51.100.1", "b@x.example", "v@y.example")
		c.mod(tx)
		if r := p.CheckRcpt(ctx, tx); r.Reason != "greylist.skipped" || r.Facts["skipped"] != c.skip {
			t.Errorf("%s: %+v", c.skip, r)
		}
	}
	if r := p.CheckRcpt(ctx, newTx("198.51.100.1", "b@x.example", "v@y.example")); r.Reason != "greylist.greylisted" {
		t.Errorf("not allow-listed: %+v", r)
	}

	// The data stage greylists the message when any recipient is greylisted.
	d, err := greylist.New(greylist.Config{Stage: "data", Header: "none"}, greylist.Deps{Store: greylist.NewMemoryStore(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Stages(); len(s) != 1 || s[0] != policy.StageData {
		t.Fatalf("stages %v", s)
	}
	tx = newTx("192.0.2.1", "a@x.example", "")
	tx.Envelope.Rcpts = []address.Address{address.Parse("u@y.example"), address.Parse("w@y.example")}
	if r := d.CheckData(ctx, tx); r.Reason != "greylist.greylisted" {
		t.Fatalf("data: %+v", r)
	}
	clk.t = clk.t.Add(300 * time.Second)
	if r := d.CheckData(ctx, tx); r.Reason != "greylist.passed" || len(r.Headers) != 0 {
		t.Fatalf("data retry: %+v", r)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []greylist.Config{
		{Stage: "mail"}, {OnError: "maybe"}, {IPv4Prefix: 33}, {AllowClients: []string{"10.0.0.0/99"}},
		{AllowRecipients: []string{"/(/"}}, {Header: "no colon"}, {Store: "mysql"}, {Store: "redis"}, {Delay: -1},
	} {
		if _, err := greylist.New(c, greylist.Deps{DataDir: t.TempDir()}); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestRedisDies: when Redis dies mid-run, a check returns within the timeout with a
// temperror, failing open (not greylisted) or closed (greylisted, 451 4.3.0) as
// configured, and recovers when Redis is back... here: never hangs.
func TestRedisDies(t *testing.T) {
	srv := redistest.StartServer(t)
	for _, mode := range []string{"accept", "tempfail"} {
		p, err := greylist.New(greylist.Config{Store: "redis", Redis: greylist.RedisConfig{Addr: srv.Addr, Prefix: mode + ":"}, OnError: mode, Timeout: 500 * time.Millisecond}, greylist.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if r := p.CheckRcpt(context.Background(), newTx("192.0.2.1", "a@x.example", "u@y.example")); r.Reason != "greylist.greylisted" {
			t.Fatalf("%s: before: %+v", mode, r)
		}
	}
	srv.Kill()
	for _, mode := range []string{"accept", "tempfail"} {
		p, _ := greylist.New(greylist.Config{Store: "redis", Redis: greylist.RedisConfig{Addr: srv.Addr}, OnError: mode, Timeout: 500 * time.Millisecond}, greylist.Deps{})
		defer p.Close()
		done := make(chan policy.Result, 1)
		go func() { done <- p.CheckRcpt(context.Background(), newTx("192.0.2.1", "a@x.example", "u@y.example")) }()
		var r policy.Result
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the check hangs with Redis dead", mode)
		}
		if r.Status != policy.StatusTempError || r.Reason != "greylist.error" || r.Facts["greylisted"] != (mode == "tempfail") {
			t.Errorf("%s: %+v", mode, r)
		}
		if mode == "tempfail" && !strings.HasPrefix(r.Facts["reply"].(string), "451 4.3.0 ") {
			t.Errorf("reply %q", r.Facts["reply"])
		}
	}
}

// TestSharedRedis: two policies (two front-ends) sharing one Redis see one state: the
// retry through the other front-end passes.
func TestSharedRedis(t *testing.T) {
	addr := redistest.Start(t)
	clk := &clock{t: time.Unix(t0, 0)}
	var ps [2]*greylist.Policy
	for i := range ps {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		p, err := greylist.New(greylist.Config{}, greylist.Deps{Store: greylist.NewRedisStore(c, ""), Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	ctx := context.Background()
	if r := ps[0].CheckRcpt(ctx, newTx("192.0.2.1", "a@x.example", "u@y.example")); r.Reason != "greylist.greylisted" {
		t.Fatalf("%+v", r)
	}
	clk.t = clk.t.Add(300 * time.Second)
	if r := ps[1].CheckRcpt(ctx, newTx("192.0.2.2", "a@x.example", "u@y.example")); r.Reason != "greylist.passed" {
		t.Fatalf("%+v", r)
	}
}

// TestSQLitePersists: the SQLite state survives closing and reopening (a restart), and
// two opens of one file (a rule reload) share one store.
func TestSQLitePersists(t *testing.T) {
	path := t.TempDir() + "/greylist.db"
	ctx := context.Background()
	p := greylist.Params{Delay: 300, RetryWindow: 86400, MaxAge: 86400 * 35, AutoAllowInterval: 3600}
	a, err := greylist.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := greylist.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two opens of one file made two stores")
	}
	if _, _, err := a.Triplet(ctx, "k", t0, p); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, _, err := b.Triplet(ctx, "k", t0+400, p); err != nil {
		t.Fatalf("the second open was closed by the first Close: %v", err)
	}
	b.Close()
	c, err := greylist.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e, passed, err := c.Triplet(ctx, "k", t0+500, p)
	if err != nil || !passed || e.First != t0 {
		t.Fatalf("after reopening: %+v %v %v", e, passed, err)
	}
}

// TestSQLiteDefault: the default store is DATA/greylist.db, opened at the first check (New
// does no I/O); a file that cannot be opened is a store error (temperror, fail open).
func TestSQLiteDefault(t *testing.T) {
	dir := t.TempDir()
	p, err := greylist.New(greylist.Config{}, greylist.Deps{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := os.Stat(greylist.DefaultDBPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("New created the database: %v", err)
	}
	if r := p.CheckRcpt(context.Background(), newTx("192.0.2.1", "a@x.example", "u@y.example")); r.Reason != "greylist.greylisted" {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(greylist.DefaultDBPath(dir)); err != nil {
		t.Fatal(err)
	}
	bad, err := greylist.New(greylist.Config{DB: dir + "/missing/dir/g.db"}, greylist.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if r := bad.CheckRcpt(context.Background(), newTx("192.0.2.1", "a@x.example", "u@y.example")); r.Reason != "greylist.error" || r.Facts["greylisted"] != false {
		t.Fatalf("%+v", r)
	}
}

// TestOneHeaderPerMessage: recipients that pass together give the message one X-Greylist
// header; the next message of the session gets its own.
func TestOneHeaderPerMessage(t *testing.T) {
	clk := &clock{t: time.Unix(t0, 0)}
	p, err := greylist.New(greylist.Config{}, greylist.Deps{Store: greylist.NewMemoryStore(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	tf := "{{grey.reply}}"
	e, err := policy.NewEngine(policy.EngineConfig{Rules: []policy.RuleSpec{{Name: "g", Stage: "rcpt", If: "grey.greylisted", Tempfail: &tf}},
		Policies: map[string]policy.Policy{"grey": p}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("192.0.2.1")})
	send := func(rcpts ...string) (greylisted int, headers int) {
		tx.Reset()
		tx.Envelope.From = address.Parse("a@x.example")
		for _, r := range rcpts {
			tx.Rcpt = address.Parse(r)
			if e.Evaluate(ctx, policy.StageRcpt, tx).Terminal() {
				greylisted++
				continue
			}
			tx.Envelope.Rcpts = append(tx.Envelope.Rcpts, tx.Rcpt)
		}
		for _, h := range tx.HeadersToAdd() {
			if h.Name == "X-Greylist" {
				headers++
			}
		}
		return
	}
	if g, _ := send("u@y.example", "v@y.example", "w@y.example"); g != 3 {
		t.Fatalf("%d greylisted", g)
	}
	clk.t = clk.t.Add(301 * time.Second)
	if g, h := send("u@y.example", "v@y.example", "w@y.example"); g != 0 || h != 1 {
		t.Fatalf("retry: %d greylisted, %d headers", g, h)
	}
	if g, h := send("x@y.example"); g != 1 || h != 0 {
		t.Fatalf("next message: %d greylisted, %d headers", g, h)
	}
	clk.t = clk.t.Add(301 * time.Second)
	if g, h := send("x@y.example"); g != 0 || h != 1 {
		t.Fatalf("its retry: %d greylisted, %d headers", g, h)
	}
}
