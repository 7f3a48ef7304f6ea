package policy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/address"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// listPolicy is a connect-stage test policy: it lists the clients of a prefix, as an RBL
// would, and counts its calls so that tests can see memoisation.
type listPolicy struct {
	prefix netip.Prefix
	calls  atomic.Int32
	delay  time.Duration
	// barrier, when set, makes the check wait until every policy sharing it has started:
	// checks that ran one after the other would time out instead.
	barrier *sync.WaitGroup
}

func (p *listPolicy) CheckConnect(ctx context.Context, tx *Transaction) Result {
	p.calls.Add(1)
	if p.barrier != nil {
		p.barrier.Done()
		done := make(chan struct{})
		go func() { p.barrier.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			return Result{Status: StatusTempError, Err: errors.New("the other checks did not run concurrently")}
		}
	}
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return Result{Status: StatusTempError, Err: ctx.Err()}
		}
	}
	if p.prefix.Contains(tx.Conn.IP) {
		return Result{Status: StatusFail, Score: 3, Reason: "test.listed", Facts: map[string]any{"listed": true, "codes": []string{"127.0.0.2"}}}
	}
	return Result{Status: StatusPass, Facts: map[string]any{"listed": false}}
}

func (p *listPolicy) DeclareFacts() map[string]any {
	return map[string]any{"listed": false, "codes": []string{}}
}

// senderPolicy serves helo and mail: it reports which identity it judged.
type senderPolicy struct{}

func (senderPolicy) CheckHelo(ctx context.Context, tx *Transaction) Result {
	return Result{Status: StatusNeutral, Facts: map[string]any{"identity": "helo"}}
}
func (senderPolicy) CheckMail(ctx context.Context, tx *Transaction) Result {
	st := StatusPass
	if tx.Envelope.From.Domain == "forged.test" {
		st = StatusFail
	}
	return Result{Status: st, Facts: map[string]any{"identity": "mail"}, Headers: []Header{{"Received-SPF", string(st)}}}
}
func (senderPolicy) DeclareFacts() map[string]any { return map[string]any{"identity": ""} }

// rcptPolicy judges each recipient: only postmaster is "known".
type rcptPolicy struct{ calls atomic.Int32 }

func (p *rcptPolicy) CheckRcpt(ctx context.Context, tx *Transaction) Result {
	p.calls.Add(1)
	return Result{Status: StatusPass, Facts: map[string]any{"known": tx.Rcpt.Local == "postmaster"}}
}
func (p *rcptPolicy) DeclareFacts() map[string]any { return map[string]any{"known": false} }

// attachPolicy is a msg fact provider, as the content package is.
type attachPolicy struct{}

func (attachPolicy) CheckData(ctx context.Context, tx *Transaction) Result {
	var atts []map[string]any
	if strings.Contains(tx.Message.Header.Get("Content-Type"), "multipart") {
		atts = append(atts, map[string]any{"name": "x.exe", "ext": "exe", "executable": true})
	}
	return Result{Status: StatusPass, Facts: map[string]any{"attachments": atts, "date_skew": 2 * time.Hour}}
}
func (attachPolicy) DeclareFacts() map[string]any {
	return map[string]any{"attachments": []map[string]any{}, "date_skew": time.Duration(0)}
}
func (attachPolicy) ProvidesMsgFacts() bool { return true }

type panicPolicy struct{}

func (panicPolicy) CheckData(ctx context.Context, tx *Transaction) Result { panic("boom") }

type hangPolicy struct{}

func (hangPolicy) CheckData(ctx context.Context, tx *Transaction) Result {
	time.Sleep(time.Hour) // ignores its context on purpose
	return Result{}
}

func testPolicies() map[string]Policy {
	return map[string]Policy{
		"zen":     &listPolicy{prefix: netip.MustParsePrefix("192.0.2.0/24")},
		"spf":     senderPolicy{},
		"users":   &rcptPolicy{},
		"content": attachPolicy{},
		"broken":  panicPolicy{},
		"stuck":   hangPolicy{},
	}
}

// scenario is the SMTP dialogue a golden case replays.
type scenario struct {
	ClientIP string   `yaml:"client_ip"`
	Hostname string   `yaml:"hostname"`
	Helo     string   `yaml:"helo"`
	Auth     string   `yaml:"auth"`
	From     string   `yaml:"from"`
	Owned    bool     `yaml:"owned"` // the SMTP server's sender ownership lookup said yes
	Rcpt     []string `yaml:"rcpt"`
	Message  string   `yaml:"message"`
}

func loadCase(t *testing.T, path string) (scenario, []RuleSpec, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc struct {
		Scenario scenario `yaml:"scenario"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc))
	specs, err := ParseRules(data, filepath.Base(path))
	return doc.Scenario, specs, err
}

// play runs a scenario through the engine and describes every decision, one per line.
func play(t *testing.T, e *Engine, sc scenario) string {
	ctx := context.Background()
	var out strings.Builder
	ip := netip.MustParseAddr(sc.ClientIP)
	tx := NewTransaction(Conn{ID: "T1", IP: ip, Hostname: sc.Hostname, AuthUser: sc.Auth, Listener: "mx"})
	say := func(what string, d Decision) bool {
		fmt.Fprintf(&out, "%s: %s", what, d.Verdict)
		if d.Rule != "" {
			fmt.Fprintf(&out, " rule=%s", d.Rule)
		}
		if d.Terminal() {
			fmt.Fprintf(&out, " reply=%q", d.Reply.String())
		}
		if d.Score != 0 {
			fmt.Fprintf(&out, " score=%g", d.Score)
		}
		if len(d.Tags) > 0 {
			fmt.Fprintf(&out, " tags=%v", d.Tags)
		}
		if len(d.DryRun) > 0 {
			fmt.Fprintf(&out, " dry_run=%v", d.DryRun)
		}
		if len(d.Headers) > 0 {
			var hs []string
			for _, h := range d.Headers {
				hs = append(hs, h.Name+": "+h.Value)
			}
			fmt.Fprintf(&out, " headers=%q", hs)
		}
		out.WriteString("\n")
		return d.Terminal()
	}
	if say("connect", e.Evaluate(ctx, StageConnect, tx)) {
		return out.String()
	}
	tx.Conn.HELO = sc.Helo
	if say("helo", e.Evaluate(ctx, StageHelo, tx)) {
		return out.String()
	}
	tx.Envelope.From = address.Parse(sc.From)
	tx.Envelope.FromOwned = sc.Owned
	if say("mail", e.Evaluate(ctx, StageMail, tx)) {
		return out.String()
	}
	for _, r := range sc.Rcpt {
		tx.Rcpt = address.Parse(r)
		if !say("rcpt "+r, e.Evaluate(ctx, StageRcpt, tx)) {
			tx.Envelope.Rcpts = append(tx.Envelope.Rcpts, tx.Rcpt)
		}
	}
	if len(tx.Envelope.Rcpts) == 0 {
		return out.String()
	}
	raw := strings.ReplaceAll(sc.Message, "\n", "\r\n")
	tx.Message = NewMessage([]byte(raw), time.Now())
	say("data", e.Evaluate(ctx, StageData, tx))
	return out.String()
}

// TestGolden compiles each testdata/golden/*.yaml and replays its scenario; the compile
// errors or the decisions must equal the .golden file beside it (go test -update rewrites).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			sc, specs, perr := loadCase(t, f)
			err := Compile(specs, testPolicies(), nil)
			if perr != nil {
				err = append(ErrorList(Errors(perr)), Errors(err)...)
			}
			var got string
			if err == nil {
				var e *Engine
				e, err = NewEngine(EngineConfig{Rules: specs, Policies: testPolicies(), LocalDomains: []string{"example.test"},
					Hostname: "mx.example.test", Timeout: 200 * time.Millisecond})
				if err == nil {
					got = play(t, e, sc)
				}
			}
			if err != nil {
				for _, e := range Errors(err) {
					got += "error: " + e.Error() + "\n"
				}
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file; run go test ./policy -update")
			require.Equal(t, string(want), got)
		})
	}
}

func TestMemoisationAndConcurrency(t *testing.T) {
	var barrier sync.WaitGroup
	barrier.Add(3)
	zen := &listPolicy{prefix: netip.MustParsePrefix("192.0.2.0/24"), barrier: &barrier}
	other := &listPolicy{prefix: netip.MustParsePrefix("198.51.100.0/24"), barrier: &barrier}
	third := &listPolicy{prefix: netip.MustParsePrefix("203.0.113.0/24"), barrier: &barrier}
	specs, err := ParseRules([]byte(`
rules:
  - name: any-list
    stage: rcpt
    if: zen.listed || other.listed || third.listed
    reject: true
  - name: zen-again
    stage: rcpt
    if: zen.listed && rcpt.domain == "example.test"
    score: 1
`), "inline")
	require.NoError(t, err)
	e, err := NewEngine(EngineConfig{Rules: specs, Policies: map[string]Policy{"zen": zen, "other": other, "third": third}})
	require.NoError(t, err)
	tx := NewTransaction(Conn{IP: netip.MustParseAddr("198.51.100.7")})
	for _, r := range []string{"a@example.test", "b@example.test", "c@example.test"} {
		tx.Rcpt = address.Parse(r)
		d := e.Evaluate(context.Background(), StageRcpt, tx)
		require.Equal(t, Reject, d.Verdict)
		// The three checks met at the barrier: they ran concurrently.
		for name, res := range d.Results {
			require.NotEqual(t, StatusTempError, res.Status, "%s: %v", name, res.Err)
		}
	}
	// Once per transaction, not once per recipient.
	require.EqualValues(t, 1, zen.calls.Load())
	require.EqualValues(t, 1, other.calls.Load())
	// A new mail transaction keeps connect-stage results.
	tx.Reset()
	tx.Rcpt = address.Parse("d@example.test")
	e.Evaluate(context.Background(), StageRcpt, tx)
	require.EqualValues(t, 1, zen.calls.Load())
}

func TestPanicAndHangBecomeTempError(t *testing.T) {
	specs, err := ParseRules([]byte(`
rules:
  - name: broken
    if: broken.temperror
    tempfail: 451 4.3.0 "checker failed"
  - name: stuck
    if: stuck.temperror && stuck.reason == "policy.timeout"
    tempfail: 451 4.3.0 "checker stuck"
`), "inline")
	require.NoError(t, err)
	e, err := NewEngine(EngineConfig{Rules: specs, Policies: testPolicies(), Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	tx := NewTransaction(Conn{IP: netip.MustParseAddr("127.0.0.1")})
	tx.Message = NewMessage([]byte("Subject: x\r\n\r\nbody\r\n"), time.Now())
	d := e.Evaluate(context.Background(), StageData, tx)
	require.Equal(t, Tempfail, d.Verdict)
	require.Equal(t, "broken", d.Rule)
	require.Equal(t, StatusTempError, d.Results["stuck"].Status)
	require.Equal(t, "policy.timeout", d.Results["stuck"].Reason)
}

func TestReloadKeepsOldRulesOnError(t *testing.T) {
	good, err := ParseRules([]byte("rules:\n  - {name: r, stage: connect, if: 'client.ip == \"192.0.2.1\"', reject: true}\n"), "good.yaml")
	require.NoError(t, err)
	e, err := NewEngine(EngineConfig{Rules: good, Policies: testPolicies()})
	require.NoError(t, err)
	bad, err := ParseRules([]byte("rules:\n  - {name: r, stage: connect, if: 'client.nope', reject: true}\n"), "bad.yaml")
	require.NoError(t, err)
	err = e.Reload(bad, testPolicies())
	require.Error(t, err)
	require.Contains(t, err.Error(), "bad.yaml:2")
	tx := NewTransaction(Conn{IP: netip.MustParseAddr("192.0.2.1")})
	require.Equal(t, Reject, e.Evaluate(context.Background(), StageConnect, tx).Verdict)
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Reply
		err  bool
	}{
		{`554 5.7.1 "listed here"`, Reply{554, "5.7.1", "listed here"}, false},
		{`451 4.7.1 try later`, Reply{451, "4.7.1", "try later"}, false},
		{`550 no enhanced code`, Reply{550, "", "no enhanced code"}, false},
		{`554 4.7.1 mismatch`, Reply{}, true},
		{`hello`, Reply{}, true},
		{`999 x`, Reply{}, true},
	} {
		got, err := ParseReply(c.in)
		if c.err {
			require.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got)
	}
}

func TestCompileReportsEveryError(t *testing.T) {
	specs, err := ParseRules([]byte(`
rules:
  - name: one
    if: zen.lsited
    reject: true
  - name: two
    stage: connect
    if: msg.size > 10
    reject: true
  - name: three
    if: true
    reject: 454 4.7.1 wrong class
`), "multi.yaml")
	require.NoError(t, err)
	err = Compile(specs, testPolicies(), nil)
	errs := Errors(err)
	require.Len(t, errs, 3, "%v", err)
	byRule := map[string]string{}
	for _, e := range errs {
		var re *RuleError
		require.True(t, errors.As(e, &re))
		byRule[re.Rule] = e.Error()
	}
	require.Contains(t, byRule["one"], "multi.yaml:4:13:")
	require.Contains(t, byRule["one"], "zen has no field lsited")
	require.Contains(t, byRule["two"], "stage connect is too early: msg is known from the data stage on")
	require.Contains(t, byRule["three"], "reject needs a 5xx reply, not 454")
}

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func TestCache(t *testing.T) {
	zen := &listPolicy{prefix: netip.MustParsePrefix("192.0.2.0/24")}
	cached := Cache(time.Minute, 100, func(s Stage, tx *Transaction) string { return tx.Conn.IP.String() })("zen", zen)
	for range 3 {
		tx := NewTransaction(Conn{IP: netip.MustParseAddr("192.0.2.9")})
		r := cached.(ConnectPolicy).CheckConnect(context.Background(), tx)
		require.Equal(t, StatusFail, r.Status)
	}
	require.EqualValues(t, 1, zen.calls.Load())
}

// closerPolicy records that it was closed.
type closerPolicy struct{ closed atomic.Bool }

func (c *closerPolicy) CheckConnect(ctx context.Context, tx *Transaction) Result {
	return Result{Status: StatusPass}
}
func (c *closerPolicy) Close() error { c.closed.Store(true); return nil }

func TestReloadClosesReplacedPolicies(t *testing.T) {
	rules, err := ParseRules([]byte("rules:\n  - {name: r, if: a.pass && b.pass, tag: x}\n"), "r.yaml")
	require.NoError(t, err)
	a1, shared := &closerPolicy{}, &closerPolicy{}
	e, err := NewEngine(EngineConfig{Rules: rules, Policies: map[string]Policy{"a": a1, "b": shared}, CloseDelay: time.Millisecond})
	require.NoError(t, err)
	a2 := &closerPolicy{}
	require.NoError(t, e.Reload(rules, map[string]Policy{"a": a2, "b": shared}))
	deadline := time.Now().Add(10 * time.Second)
	for !a1.closed.Load() {
		require.True(t, time.Now().Before(deadline), "the replaced policy was never closed")
		time.Sleep(time.Millisecond)
	}
	require.False(t, shared.closed.Load(), "an instance kept by the new rules must stay open")
	require.False(t, a2.closed.Load())
	require.NoError(t, e.Close())
	require.True(t, a2.closed.Load())
}

func TestParseHeaderSkipsJunkLines(t *testing.T) {
	raw := []byte("Junk line without a colon\r\nFrom: a@example.net\r\n continued\r\n: no name\r\nSubject: hi\r\n\r\nbody\r\n")
	h, end, bad := ParseHeader(raw)
	require.True(t, bad)
	require.Equal(t, "a@example.net continued", h.Get("From"))
	require.Equal(t, "hi", h.Get("Subject"))
	require.Equal(t, "body\r\n", string(raw[end:]))

	h, end, bad = ParseHeader([]byte("Subject: no body"))
	require.False(t, bad)
	require.Equal(t, "no body", h.Get("Subject"))
	require.Equal(t, len("Subject: no body"), end)
}
