package policyd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policyd"
)

// listed is a connect-stage policy that counts its runs.
type listed struct {
	bad  netip.Prefix
	runs *atomic.Int64
}

func (l listed) CheckConnect(ctx context.Context, tx *policy.Transaction) policy.Result {
	l.runs.Add(1)
	return policy.Result{Status: policy.StatusPass, Facts: map[string]any{"listed": l.bad.Contains(tx.Conn.IP)}}
}

func (listed) DeclareFacts() map[string]any { return map[string]any{"listed": false} }

const testRules = `
rules:
  - name: listed
    stage: rcpt
    if: bl.listed && !client.authenticated
    reject: 554 5.7.1 "{{client.ip}} is listed"
  - name: spammer
    stage: mail
    if: sender.address == "spammer@bad.test"
    reject: 550 5.7.1 "go away"
  - name: busy
    stage: rcpt
    if: rcpt.address == "busy@example.test"
    tempfail: 451 4.7.1 "try later please"
  - name: hold
    stage: rcpt
    if: rcpt.address == "held@example.test"
    quarantine: true
  - name: drop
    stage: rcpt
    if: rcpt.address == "drop@example.test"
    discard: true
  - name: tag
    stage: rcpt
    if: rcpt.domain == "example.test"
    add_header: "X-Portcullis-Seen: rcpt {{rcpt.address}}"
  - name: dry
    stage: rcpt
    if: rcpt.address == "dry@example.test"
    log_only: true
    reject: 554 5.7.1 "would reject"
`

func newServer(t testing.TB, runs *atomic.Int64) *policyd.Server {
	t.Helper()
	return newServerRecording(t, runs, nil)
}

func newServerRecording(t testing.TB, runs *atomic.Int64, rec policyd.DecisionRecorder) *policyd.Server {
	t.Helper()
	rules, err := policy.ParseRules([]byte(testRules), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if runs == nil {
		runs = new(atomic.Int64)
	}
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler),
		Policies: map[string]policy.Policy{"bl": listed{netip.MustParsePrefix("192.0.2.0/24"), runs}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := policyd.New(policyd.Config{TrustedNetworks: []string{"10.0.0.0/8"}}, policyd.Deps{Engine: eng, Decisions: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decisions records what Decided was told, as text.
type decisions []string

func (d *decisions) Decided(tx *policy.Transaction, dec policy.Decision, reply string, rcpts []string) {
	*d = append(*d, fmt.Sprintf("%s %s %s stage=%s verdict=%s rule=%s rcpts=%v reply=%s",
		tx.Conn.Listener, tx.Conn.IP, tx.Envelope.From.String(), dec.Stage, dec.Verdict, dec.Rule, rcpts, reply))
}

// TestDecisionsRecorded: each refusal and each accepted recipient reaches the decision
// log, with the stage and rule that decided; an early stage's refusal repeated at each
// RCPT is one record per recipient.
func TestDecisionsRecorded(t *testing.T) {
	var rec decisions
	s := newServerRecording(t, nil, &rec)
	ctx := context.Background()
	for _, r := range []policyd.Request{
		req("RCPT", "a1", "198.51.100.1", "ok@good.test", "user@example.test"),
		req("RCPT", "a2", "192.0.2.9", "ok@good.test", "user@example.test"),
		req("RCPT", "a3", "198.51.100.1", "spammer@bad.test", "u1@example.test"),
		req("RCPT", "a3", "198.51.100.1", "spammer@bad.test", "u2@example.test"),
		req("RCPT", "a6", "198.51.100.1", "", "drop@example.test"),
		req("END-OF-MESSAGE", "a1", "198.51.100.1", "ok@good.test", ""),
	} {
		if _, err := s.Answer(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	want := decisions{
		"policyd 198.51.100.1 ok@good.test stage=rcpt verdict=continue rule= rcpts=[user@example.test] reply=PREPEND X-Portcullis-Seen: rcpt user@example.test",
		"policyd 192.0.2.9 ok@good.test stage=rcpt verdict=reject rule=listed rcpts=[user@example.test] reply=554 5.7.1 192.0.2.9 is listed",
		"policyd 198.51.100.1 spammer@bad.test stage=mail verdict=reject rule=spammer rcpts=[u1@example.test] reply=550 5.7.1 go away",
		"policyd 198.51.100.1 spammer@bad.test stage=mail verdict=reject rule=spammer rcpts=[u2@example.test] reply=550 5.7.1 go away",
		"policyd 198.51.100.1  stage=rcpt verdict=discard rule=drop rcpts=[drop@example.test] reply=DISCARD by portcullis rule drop",
	}
	if strings.Join(rec, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(rec, "\n"), strings.Join(want, "\n"))
	}
}

func req(state, instance, client, sender, rcpt string) policyd.Request {
	return policyd.Request{"request": "smtpd_access_policy", "protocol_state": state, "protocol_name": "ESMTP",
		"instance": instance, "client_address": client, "client_name": "unknown", "reverse_client_name": "unknown",
		"helo_name": "client.test", "sender": sender, "recipient": rcpt, "queue_id": "", "size": "0"}
}

func TestAnswer(t *testing.T) {
	var runs atomic.Int64
	s := newServer(t, &runs)
	ctx := context.Background()
	for _, c := range []struct {
		state, inst, client, from, rcpt, want string
	}{
		{"RCPT", "a1", "198.51.100.1", "ok@good.test", "user@example.test", "PREPEND X-Portcullis-Seen: rcpt user@example.test"},
		{"RCPT", "a1", "198.51.100.1", "ok@good.test", "user2@example.test", "PREPEND X-Portcullis-Seen: rcpt user2@example.test"},
		{"RCPT", "a1", "198.51.100.1", "ok@good.test", "other@else.test", "DUNNO"},
		{"RCPT", "a2", "192.0.2.9", "ok@good.test", "user@example.test", "554 5.7.1 192.0.2.9 is listed"},
		{"RCPT", "a3", "198.51.100.1", "spammer@bad.test", "user@example.test", "550 5.7.1 go away"},
		{"RCPT", "a3", "198.51.100.1", "spammer@bad.test", "user2@example.test", "550 5.7.1 go away"},
		{"RCPT", "a4", "198.51.100.1", "", "busy@example.test", "451 4.7.1 try later please"},
		{"RCPT", "a5", "198.51.100.1", "", "held@example.test", "HOLD by portcullis rule hold"},
		{"RCPT", "a5", "198.51.100.1", "", "held2@other.test", "DUNNO"},
		{"RCPT", "a6", "198.51.100.1", "", "drop@example.test", "DISCARD by portcullis rule drop"},
		{"RCPT", "a7", "198.51.100.1", "", "dry@else.test", "DUNNO"},
		{"DATA", "a1", "198.51.100.1", "ok@good.test", "", "DUNNO"},
		{"END-OF-MESSAGE", "a1", "198.51.100.1", "ok@good.test", "", "DUNNO"},
		{"VRFY", "a8", "198.51.100.1", "", "x@example.test", "DUNNO"},
	} {
		got, err := s.Answer(ctx, req(c.state, c.inst, c.client, c.from, c.rcpt))
		if err != nil || got != c.want {
			t.Errorf("%s %s %s %s → %q, %v; want %q", c.state, c.inst, c.from, c.rcpt, got, err, c.want)
		}
	}
	// The blocklist ran once per transaction that reached a rcpt-stage rule (a1 with
	// three recipients included; not a3, refused at mail, nor the VRFY).
	if n := runs.Load(); n != 6 {
		t.Errorf("the blocklist ran %d times, want 6", n)
	}
	// log_only: WARN names the rule, the header still comes first.
	got, _ := s.Answer(ctx, req("RCPT", "a9", "198.51.100.1", "", "dry@example.test"))
	if got != "PREPEND X-Portcullis-Seen: rcpt dry@example.test" {
		t.Errorf("dry run with header → %q", got)
	}
	s.Answer(ctx, req("RCPT", "a10", "198.51.100.1", "", "dry@example.test"))
	got, _ = s.Answer(ctx, req("RCPT", "a10", "198.51.100.1", "", "dry@example.test"))
	if got != "WARN log_only rules matched: dry" {
		t.Errorf("dry run → %q", got)
	}
}

func TestAnswerErrors(t *testing.T) {
	s := newServer(t, nil)
	for _, r := range []policyd.Request{
		{"protocol_state": "RCPT"},
		{"request": "junk", "protocol_state": "RCPT"},
		{"request": "smtpd_access_policy"},
	} {
		if a, err := s.Answer(context.Background(), r); err == nil {
			t.Errorf("%v → %q, want an error", r, a)
		}
	}
}

func start(t *testing.T, cfg policyd.Config) (addr string) {
	t.Helper()
	rules, _ := policy.ParseRules([]byte(testRules), "rules.yaml")
	var runs atomic.Int64
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler),
		Policies: map[string]policy.Policy{"bl": listed{netip.MustParsePrefix("192.0.2.0/24"), &runs}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := policyd.New(cfg, policyd.Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := policyd.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func encode(r policyd.Request) string {
	var b strings.Builder
	for k, v := range r {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.String() + "\n"
}

// TestConnection: requests on one reused connection, each answered with one action
// line and an empty line.
func TestConnection(t *testing.T) {
	addr := start(t, policyd.Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, want := range []string{"action=PREPEND X-Portcullis-Seen: rcpt u@example.test", "action=554 5.7.1 192.0.2.1 is listed", "action=DUNNO"} {
		client := []string{"198.51.100.7", "192.0.2.1", "198.51.100.7"}[i]
		rcpt := []string{"u@example.test", "u@example.test", "x@else.test"}[i]
		io.WriteString(c, encode(req("RCPT", fmt.Sprint("c", i), client, "a@b.test", rcpt)))
		line, err := br.ReadString('\n')
		empty, err2 := br.ReadString('\n')
		if err != nil || err2 != nil || strings.TrimSpace(line) != want || empty != "\n" {
			t.Fatalf("request %d: %q %q (%v %v), want %q and an empty line", i, line, empty, err, err2, want)
		}
	}
}

// TestBadInput: a malformed request gets no reply and the connection closes; nothing
// hangs.
func TestBadInput(t *testing.T) {
	addr := start(t, policyd.Config{IdleTimeout: 2 * time.Second, MaxConnections: 4})
	big := "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=" + strings.Repeat("a", 1<<20) + "\n\n"
	many := "request=smtpd_access_policy\nprotocol_state=RCPT\n" + strings.Repeat("x=y\n", 200)
	for _, c := range []struct{ name, in string }{
		{"no empty line, then EOF", "request=smtpd_access_policy\nprotocol_state=RCPT\n"},
		{"1 MB attribute", big},
		{"binary junk", "\x00\x01\x02\xff\xfe garbage\n\x00\n\n"},
		{"no equals sign", "request smtpd_access_policy\n\n"},
		{"empty name", "=x\n\n"},
		{"too many attributes", many},
		{"wrong request", "request=other\nprotocol_state=RCPT\n\n"},
		{"duplicate", "request=smtpd_access_policy\nrequest=smtpd_access_policy\n\n"},
		{"empty request", "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			go func() {
				io.WriteString(conn, c.in)
				if c.name == "no empty line, then EOF" {
					conn.(*net.TCPConn).CloseWrite()
				}
			}()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			b, err := io.ReadAll(conn)
			// The server closes with our bytes unread: the kernel may answer with a reset.
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil
			}
			if err != nil || len(b) != 0 {
				t.Fatalf("got %q, %v; want no reply and the connection closed", b, err)
			}
		})
	}
	// A client that sends half a request and waits is cut at the idle timeout.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "request=smtpd_access_policy\n")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(conn); err != nil || len(b) != 0 {
		t.Fatalf("slow client: %q, %v; want the connection closed", b, err)
	}
	// The server still answers.
	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	io.WriteString(good, encode(req("RCPT", "z", "198.51.100.1", "", "x@else.test")))
	line, _ := bufio.NewReader(good).ReadString('\n')
	if line != "action=DUNNO\n" {
		t.Fatalf("after bad input: %q", line)
	}
}

// TestMaxConnections: a connection over the limit is closed at once.
func TestMaxConnections(t *testing.T) {
	addr := start(t, policyd.Config{MaxConnections: 1})
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	// Make sure c1 holds its slot: it gets an answer.
	io.WriteString(c1, encode(req("RCPT", "m1", "198.51.100.1", "", "x@else.test")))
	br := bufio.NewReader(c1)
	if l, _ := br.ReadString('\n'); l != "action=DUNNO\n" {
		t.Fatalf("first connection: %q", l)
	}
	br.ReadString('\n')
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(c2); err != nil || len(b) != 0 {
		t.Fatalf("second connection: %q %v, want closed", b, err)
	}
}

func TestReadRequestLimits(t *testing.T) {
	lim := policyd.Limits{MaxLine: 20, MaxAttributes: 2}
	for in, ok := range map[string]bool{
		"a=b\nc=d\n\n":                          true,
		"a=b\r\nc=\r\n\r\n":                     true,
		"a=b\nc=d\ne=f\n\n":                     false,
		"a=" + strings.Repeat("x", 18) + "\n\n": true,
		"a=" + strings.Repeat("x", 19) + "\n\n": false,
		"a=b\x00\n\n":                           false,
	} {
		r, err := policyd.ReadRequest(bufio.NewReaderSize(strings.NewReader(in), lim.MaxLine+2), lim)
		if (err == nil) != ok {
			t.Errorf("%q → %v, %v; want ok=%v", in, r, err, ok)
		}
	}
	if _, err := policyd.ReadRequest(bufio.NewReader(strings.NewReader("")), lim); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@b\nrecipient=c@d\ninstance=1.2.3\n\n"))
	f.Add([]byte("a=b\r\n\r\n"))
	f.Add([]byte("=\n\n"))
	f.Add([]byte("x\x00=y\n"))
	s := newServer(f, nil)
	lim := policyd.Limits{MaxLine: 64, MaxAttributes: 16}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(in)), lim.MaxLine+2)
		for {
			r, err := policyd.ReadRequest(br, lim)
			if err != nil {
				return
			}
			if len(r) > lim.MaxAttributes {
				t.Fatalf("%d attributes", len(r))
			}
			a, err := s.Answer(context.Background(), r)
			if err == nil && (a == "" || strings.ContainsAny(a, "\r\n\x00")) {
				t.Fatalf("action %q", a)
			}
		}
	})
}

// TestTransactionsBounded: past max_transactions the least recently used transaction
// is forgotten: its next request runs the earlier stages again.
func TestTransactionsBounded(t *testing.T) {
	rules, _ := policy.ParseRules([]byte(testRules), "rules.yaml")
	var runs atomic.Int64
	eng, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler),
		Policies: map[string]policy.Policy{"bl": listed{netip.MustParsePrefix("192.0.2.0/24"), &runs}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := policyd.New(policyd.Config{MaxTransactions: 2}, policyd.Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ask := func(inst string) {
		if _, err := s.Answer(ctx, req("RCPT", inst, "198.51.100.1", "a@b.test", "x@else.test")); err != nil {
			t.Fatal(err)
		}
	}
	ask("t1")
	ask("t2")
	ask("t1") // remembered: no new run
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
	ask("t3") // evicts t2, the least recently used
	ask("t1") // still remembered
	if n := runs.Load(); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	ask("t2") // forgotten: runs again
	if n := runs.Load(); n != 4 {
		t.Fatalf("%d runs, want 4", n)
	}
}

// TestUnixSocket: the server listens on a unix socket made for Postfix (mode 0666),
// replacing one a previous run left behind.
func TestUnixSocket(t *testing.T) {
	path := t.TempDir() + "/policy.sock"
	for range 2 {
		ln, err := policyd.Listen("unix:"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := newServer(t, nil)
		go s.Serve(ln)
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, encode(req("RCPT", "u", "198.51.100.1", "", "x@else.test")))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != "action=DUNNO\n" {
			t.Fatalf("over the unix socket: %q", line)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o666 {
			t.Fatalf("socket mode %v, %v", fi.Mode(), err)
		}
		s.Close()
	}
}

// TestRecipientsPerInstanceBounded: a peer that repeats one instance forever gets 452
// 4.5.3 past the bound instead of growing the transaction without end.
func TestRecipientsPerInstanceBounded(t *testing.T) {
	s := newServer(t, nil)
	ctx := context.Background()
	var got string
	for i := range 1001 {
		var err error
		got, err = s.Answer(ctx, req("RCPT", "flood", "198.51.100.1", "a@good.test", fmt.Sprintf("u%d@else.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i < 1000 && got != "DUNNO" {
			t.Fatalf("recipient %d: %q", i, got)
		}
	}
	if got != "452 4.5.3 Too many recipients" {
		t.Fatalf("recipient 1001: %q, want 452 4.5.3", got)
	}
}
