package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/delivery/internal/clienttest"
	"github.com/portcullis-mail/portcullis/delivery/relay"
	"github.com/portcullis-mail/portcullis/delivery/relay/postfixtest"
	"github.com/portcullis-mail/portcullis/dkim"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

func netSplit(addr string) (string, string, error) { return net.SplitHostPort(addr) }

func message(subject string) []byte {
	return []byte("From: Alice Sender <a@example.net>\r\nTo: someone@remote.test\r\nSubject: " + subject +
		"\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@example.net>\r\n\r\nHello.\r\n.dot line\r\nbye\r\n")
}

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

var send = clienttest.Send

// TestPostfixMX relays to the mail exchangers of remote.test: the first greets with 421,
// the second refuses connections, the third is a real Postfix with STARTTLS that
// delivers two recipients, rejects an unknown one with 550 and defers one with 450.
// The message is DKIM-signed on the way.
func TestPostfixMX(t *testing.T) {
	pf := postfixtest.Start(t, postfixtest.Config{Users: []string{"alice", "bob"}, TLS: true, MessageSizeLimit: 200000,
		Access: map[string]string{"defer@remote.test": "450 4.2.0 try again later"}})
	p := port(t, pf.Addr)
	postfixtest.StartSink(t, fmt.Sprintf("127.0.0.2:%d", p), "-Q", "CONNECT")
	dns := dnstest.New(t, dnstest.Zone{
		"remote.test.":     {"MX 5 mx0.remote.test.", "MX 10 mx1.remote.test.", "MX 20 mx2.remote.test."},
		"mx0.remote.test.": {"A 127.0.0.2"},
		"mx1.remote.test.": {"A 127.0.0.3"}, // nothing listens there
		"mx2.remote.test.": {"A 127.0.0.1"},
	})
	keys := t.TempDir()
	if _, _, err := dkim.GenerateKey(keys, "example.net", "s1", dkim.AlgoEd25519); err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.NewSigner(dkim.SignerConfig{Dir: keys})
	if err != nil {
		t.Fatal(err)
	}
	c, err := relay.New(relay.Config{Hostname: "out.example.net", Port: p, Resolver: dns.Resolver(), Sign: signer.SignMessage, ConnectTimeout: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := send(t, c, "", []string{"alice@remote.test", "nobody@remote.test", "defer@remote.test", "bob@remote.test"}, message("mx"))
	if err != nil {
		t.Fatalf("Deliver: %v (%+v)", err, res)
	}
	want := []relay.Status{relay.Delivered, relay.Permanent, relay.Temporary, relay.Delivered}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("%s: %v %q, want %v", r.Rcpt, r.Status, r.Reply, want[i])
		}
		if r.Host != "mx2.remote.test" {
			t.Errorf("%s: answered by %q, want mx2.remote.test", r.Rcpt, r.Host)
		}
	}
	if r := res[1]; r.Code != 550 || r.Enhanced != "5.1.1" {
		t.Errorf("unknown user: %+v", r)
	}
	if r := res[2]; r.Code != 450 || r.Enhanced != "4.2.0" || !strings.Contains(r.Reply, "try again later") {
		t.Errorf("deferred user: %+v", r)
	}
	for _, u := range []string{"alice", "bob"} {
		m := pf.WaitMessages(t, u, 1)[0]
		if !bytes.Contains(m, []byte("DKIM-Signature:")) || !bytes.Contains(m, []byte("d=example.net")) {
			t.Errorf("%s: message not DKIM-signed:\n%s", u, m)
		}
		if !bytes.Contains(m, []byte("using TLS")) {
			t.Errorf("%s: not received over TLS:\n%s", u, m)
		}
		if !bytes.Contains(m, []byte("\n.dot line\n")) || !bytes.Contains(m, []byte("Received: from out.example.net (")) {
			t.Errorf("%s: body or EHLO name wrong:\n%s", u, m)
		}
	}

	// Over the announced SIZE: failed without sending.
	big := append(message("big"), bytes.Repeat([]byte("x"), 300000)...)
	res, _ = send(t, c, "", []string{"alice@remote.test"}, big)
	if r := res[0]; r.Status != relay.Permanent || r.Enhanced != "5.3.4" {
		t.Errorf("oversize: %+v", r)
	}

	// The session to mx2 is reused: three more messages, no new connection.
	before := strings.Count(pf.Log(), "connect from")
	for i := range 3 {
		if res, _ := send(t, c, "", []string{"alice@remote.test"}, message(fmt.Sprint("again", i))); res[0].Status != relay.Delivered {
			t.Fatalf("%+v", res[0])
		}
	}
	if n := strings.Count(pf.Log(), "connect from") - before; n != 0 {
		t.Errorf("3 messages opened %d new connections, want 0 (reuse)", n)
	}
	pf.WaitMessages(t, "alice", 4)

	// The remote goes away: the idle session is dead and nothing listens any more.
	pf.Stop()
	res, err = send(t, c, "", []string{"alice@remote.test"}, message("gone"))
	if err == nil || res[0].Status != relay.Temporary {
		t.Fatalf("after the MX went away: err %v, %+v", err, res[0])
	}
}

func TestDNSFailures(t *testing.T) {
	sink := postfixtest.StartSink(t, "")
	p := port(t, sink.Addr)
	dns := dnstest.New(t, dnstest.Zone{
		"nullmx.test.":         {"MX 0 ."},
		"implicit.test.":       {"A 127.0.0.1"}, // no MX: the domain is its own MX
		"broken.test.":         {"MX 10 mx.broken.test."},
		"nohost.test.":         {"MX 10 mx.nohost.test."}, // the MX host does not exist
		"loop.test.":           {"MX 10 out.example.net.", "MX 20 other.loop.test."},
		"backup.test.":         {"MX 10 primary.backup.test.", "MX 20 out.example.net.", "MX 30 worse.backup.test."},
		"primary.backup.test.": {"A 127.0.0.3"}, // nothing listens
		"worse.backup.test.":   {"A 127.0.0.1"}, // the sink, which must not be tried
		"other.loop.test.":     {"A 127.0.0.1"},
	})
	dns.Fail("broken.test.", dnstest.ServFail)
	c, _ := relay.New(relay.Config{Hostname: "out.example.net", Port: p, Resolver: dns.Resolver(), Logger: quiet})
	defer c.Close()
	cases := []struct {
		rcpt   string
		status relay.Status
		enh    string
	}{
		{"x@nullmx.test", relay.Permanent, "5.1.10"},
		{"x@nxdomain.test", relay.Permanent, "5.1.2"},
		{"x@broken.test", relay.Temporary, "4.4.3"},
		{"x@nohost.test", relay.Temporary, "4.4.4"},
		{"x@implicit.test", relay.Delivered, "2.0.0"},
		{"x@loop.test", relay.Permanent, "5.4.6"},
		{"x@backup.test", relay.Temporary, "4.4.1"}, // the MX less preferred than us is not tried
	}
	for _, tc := range cases {
		res, _ := send(t, c, "", []string{tc.rcpt}, message("dns"))
		if r := res[0]; r.Status != tc.status || r.Enhanced != tc.enh {
			t.Errorf("%s: %v %s %q, want %v %s", tc.rcpt, r.Status, r.Enhanced, r.Reply, tc.status, tc.enh)
		}
	}
	if n := len(sink.Messages(t)); n != 1 {
		t.Errorf("sink got %d messages, want 1", n)
	}
}

// TestDeferThenDeliver: a next hop that defers every recipient, then recovers.
func TestDeferThenDeliver(t *testing.T) {
	addr := testenv.FreeAddr(t)
	hop := "[127.0.0.1]:" + fmt.Sprint(port(t, addr))
	c, _ := relay.New(relay.Config{Logger: quiet})
	defer c.Close()

	s1 := postfixtest.StartSink(t, addr, "-r", "RCPT", "-b", "451 4.3.2 please try later")
	res, _ := send(t, c, hop, []string{"a@remote.test", "b@remote.test"}, message("first"))
	for _, r := range res {
		if r.Status != relay.Temporary || r.Code != 451 || r.Enhanced != "4.3.2" {
			t.Errorf("first attempt: %+v", r)
		}
	}
	s1.Stop()
	s2 := postfixtest.StartSink(t, addr)
	res, err := send(t, c, hop, []string{"a@remote.test", "b@remote.test"}, message("second"))
	if err != nil || res[0].Status != relay.Delivered || res[1].Status != relay.Delivered {
		t.Fatalf("second attempt: %v %+v", err, res)
	}
	m := s2.Messages(t)
	if len(m) != 1 || !bytes.Contains(m[0], []byte("Subject: second")) || !bytes.Contains(m[0], []byte("X-Rcpt-Args: <b@remote.test>")) {
		t.Fatalf("sink got %q", m)
	}
}

// TestRemoteDropsConnection: smtp-sink drops the connection after the final dot, or
// rejects DATA with 5xx.
func TestRemoteDropsConnection(t *testing.T) {
	c, _ := relay.New(relay.Config{Logger: quiet})
	defer c.Close()
	drop := postfixtest.StartSink(t, "", "-q", ".")
	res, err := send(t, c, "["+drop.Addr[:strings.LastIndexByte(drop.Addr, ':')]+"]"+drop.Addr[strings.LastIndexByte(drop.Addr, ':'):], []string{"a@remote.test"}, message("drop"))
	if err != nil || res[0].Status != relay.Temporary {
		t.Errorf("dropped after the dot: err %v %+v", err, res[0])
	}
	rej := postfixtest.StartSink(t, "", "-f", "DATA", "-B", "554 5.6.0 content rejected")
	res, _ = send(t, c, "[127.0.0.1]:"+fmt.Sprint(port(t, rej.Addr)), []string{"a@remote.test", "b@remote.test"}, message("rej"))
	for _, r := range res {
		if r.Status != relay.Permanent || r.Code != 554 || r.Enhanced != "5.6.0" {
			t.Errorf("DATA rejected: %+v", r)
		}
	}
}

// At most PerDestination sessions to one next hop at a time; the others wait for a
// slot (or their deadline).
func TestPerDestinationLimit(t *testing.T) {
	srv := startServer(t, false, tls.NoClientCert)
	srv.delay.Store(int64(150 * time.Millisecond))
	hop := "[127.0.0.1]:" + fmt.Sprint(port(t, srv.addr))
	c, _ := relay.New(relay.Config{PerDestination: 2, Logger: quiet})
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			res, err := send(t, c, hop, []string{"a@remote.test"}, message(fmt.Sprint("limit", i)))
			if err != nil || res[0].Status != relay.Delivered {
				t.Errorf("%v %+v", err, res[0])
			}
		})
	}
	wg.Wait()
	if m := srv.maxActive(); m > 2 || m < 1 {
		t.Errorf("at most %d sessions at once, want 1..2", m)
	}
	if n := len(srv.received()); n != 6 {
		t.Errorf("server got %d messages, want 6", n)
	}
	// With the slots taken, a delivery whose deadline passes first is deferred.
	srv.delay.Store(int64(time.Second))
	for range 2 {
		wg.Go(func() { send(t, c, hop, []string{"a@remote.test"}, message("hold")) })
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	msg := message("late")
	res, _ := c.Deliver(ctx, hop, "s@example.net", []string{"b@remote.test"}, bytes.NewReader(msg), int64(len(msg)))
	if res[0].Status != relay.Temporary {
		t.Errorf("delivery while the slots are taken: %+v", res[0])
	}
	wg.Wait()
}

func TestParseNextHop(t *testing.T) {
	for hop, want := range map[string]string{
		"example.org":             "example.org 0 true",
		"smtp:Example.ORG.:2525":  "example.org 2525 true",
		"[mail.example.org]":      "mail.example.org 0 false",
		"[192.0.2.1]:587":         "192.0.2.1 587 false",
		"smtp:[ipv6:2001:db8::1]": "2001:db8::1 0 false",
	} {
		h, p, mx, err := relay.ParseNextHop(hop)
		if got := fmt.Sprint(h, " ", p, " ", mx); err != nil || got != want {
			t.Errorf("ParseNextHop(%q) = %q %v, want %q", hop, got, err, want)
		}
	}
	for _, bad := range []string{"", "[x", "[x]y", "a b", "x:0", "x:99999", "[x]:", "u@x"} {
		if _, _, _, err := relay.ParseNextHop(bad); err == nil {
			t.Errorf("ParseNextHop(%q) accepted", bad)
		}
	}
}

// TestSmarthostAuth relays through a submission server that requires STARTTLS and
// AUTH PLAIN (go-smtp's server).
func TestSmarthostAuth(t *testing.T) {
	srv := startSubmission(t)
	hop := "[127.0.0.1]:" + fmt.Sprint(port(t, srv.addr))
	for _, tc := range []struct {
		user, pass string
		status     relay.Status
	}{
		{"relayuser", "s3cret", relay.Delivered},
		{"relayuser", "wrong", relay.Temporary}, // a rejected login defers, as Postfix's smtp_sasl_auth_soft_bounce
	} {
		c, err := relay.New(relay.Config{Logger: quiet, Hosts: map[string]relay.HostConfig{hop: {TLS: relay.TLSEncrypt, User: tc.user, Password: tc.pass}}})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := send(t, c, hop, []string{"far@elsewhere.test"}, message("smarthost"))
		c.Close()
		if res[0].Status != tc.status {
			t.Errorf("password %q: %+v", tc.pass, res[0])
		}
	}
	if got := srv.received(); len(got) != 1 || !strings.Contains(got[0], "Subject: smarthost") {
		t.Fatalf("smarthost got %q", got)
	}
	// Level verify fails against a self-signed certificate: deferred, nothing sent.
	c, _ := relay.New(relay.Config{Logger: quiet, Hosts: map[string]relay.HostConfig{hop: {TLS: relay.TLSVerify, User: "relayuser", Password: "s3cret"}}})
	defer c.Close()
	res, _ := send(t, c, hop, []string{"far@elsewhere.test"}, message("verify"))
	if res[0].Status != relay.Temporary {
		t.Errorf("unverifiable certificate: %+v", res[0])
	}
	// Credentials are never sent without TLS.
	if _, err := relay.New(relay.Config{Hosts: map[string]relay.HostConfig{hop: {TLS: relay.TLSMay, User: "u", Password: "p"}}}); err == nil {
		t.Error("AUTH at tls level may accepted")
	}
}

type submission struct {
	noAuth bool
	delay  atomic.Int64 // ns to wait before answering DATA
	addr   string
	active atomic.Int32
	max    atomic.Int32
	mu     sync.Mutex
	msgs   []string
}

func (s *submission) maxActive() int { return int(s.max.Load()) }

func (s *submission) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

func startSubmission(t *testing.T) *submission { return startServer(t, true, tls.NoClientCert) }

// startServer runs go-smtp's server with STARTTLS; auth requires AUTH before MAIL;
// clientAuth set to require a client certificate makes every handshake fail.
func startServer(t *testing.T, auth bool, clientAuth tls.ClientAuthType) *submission {
	cert, key := postfixtest.SelfSigned(t, "smarthost.test")
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	sub := &submission{noAuth: !auth}
	srv := smtp.NewServer(backend{sub})
	srv.Domain = "smarthost.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: clientAuth}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sub.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sub
}

type backend struct{ s *submission }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	n := b.s.active.Add(1)
	for {
		m := b.s.max.Load()
		if n <= m || b.s.max.CompareAndSwap(m, n) {
			break
		}
	}
	return &session{s: b.s, auth: b.s.noAuth}, nil
}

type session struct {
	s    *submission
	auth bool
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user == "relayuser" && pass == "s3cret" {
			s.auth = true
			return nil
		}
		return errors.New("bad credentials")
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.auth {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	return nil
}
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(s.s.delay.Load()))
	s.s.mu.Lock()
	s.s.msgs = append(s.s.msgs, string(b))
	s.s.mu.Unlock()
	return nil
}
func (s *session) Reset()        {}
func (s *session) Logout() error { s.s.active.Add(-1); return nil }

// DSN parameters are passed on (RFC 3461 §4); malformed ones are left out.
func TestDSNParameters(t *testing.T) {
	sink := postfixtest.StartSink(t, "")
	hop := "[127.0.0.1]:" + fmt.Sprint(port(t, sink.Addr))
	c, _ := relay.New(relay.Config{Logger: quiet})
	defer c.Close()
	msg := message("dsn")
	dsn := &relay.DSN{Ret: "hdrs", EnvID: "QQ314159", Notify: map[string]string{
		"a@remote.test": "NEVER", "b@remote.test": "failure,delay", "c@remote.test": "NEVER,SUCCESS"}}
	res, err := c.DeliverDSN(context.Background(), hop, "s@example.net", []string{"a@remote.test", "b@remote.test", "c@remote.test"}, bytes.NewReader(msg), int64(len(msg)), dsn)
	if err != nil || res[0].Status != relay.Delivered {
		t.Fatalf("%v %+v", err, res)
	}
	m := sink.Messages(t)
	if len(m) != 1 {
		t.Fatalf("sink got %d messages", len(m))
	}
	for _, want := range []string{"X-Mail-Args: <s@example.net> BODY=8BITMIME RET=HDRS ENVID=QQ314159\n",
		"X-Rcpt-Args: <a@remote.test> NOTIFY=NEVER", "X-Rcpt-Args: <b@remote.test> NOTIFY=FAILURE,DELAY", "X-Rcpt-Args: <c@remote.test>\n"} {
		if !bytes.Contains(m[0], []byte(want)) {
			t.Errorf("dump lacks %q:\n%s", want, m[0])
		}
	}
}

// At level may, a failed TLS handshake falls back to plaintext on a new connection
// (Postfix does the same); at level encrypt it defers.
func TestTLSFallback(t *testing.T) {
	srv := startServer(t, false, tls.RequireAnyClientCert)
	hop := "[127.0.0.1]:" + fmt.Sprint(port(t, srv.addr))
	c, _ := relay.New(relay.Config{Logger: quiet})
	defer c.Close()
	if res, err := send(t, c, hop, []string{"x@elsewhere.test"}, message("fallback")); err != nil || res[0].Status != relay.Delivered {
		t.Fatalf("level may: %v %+v", err, res[0])
	}
	c2, _ := relay.New(relay.Config{Logger: quiet, Hosts: map[string]relay.HostConfig{hop: {TLS: relay.TLSEncrypt}}})
	defer c2.Close()
	if res, _ := send(t, c2, hop, []string{"x@elsewhere.test"}, message("strict")); res[0].Status != relay.Temporary || res[0].Enhanced != "4.7.5" {
		t.Fatalf("level encrypt: %+v", res[0])
	}
	if got := srv.received(); len(got) != 1 || !strings.Contains(got[0], "Subject: fallback") {
		t.Fatalf("server got %q", got)
	}
}

// A recipient deferred before the data (greylisting at the primary MX) is tried at the
// backup MX at once; one whose data was sent when the primary dropped the session is not
// (it may have been delivered: trying elsewhere could deliver twice).
func TestNextMXForDeferredRecipients(t *testing.T) {
	addr := testenv.FreeAddr(t)
	p := port(t, addr)
	backup := postfixtest.StartSink(t, addr)
	postfixtest.StartSink(t, fmt.Sprintf("127.0.0.2:%d", p), "-r", "RCPT", "-b", "450 4.7.1 greylisted")
	postfixtest.StartSink(t, fmt.Sprintf("127.0.0.3:%d", p), "-q", ".")
	dns := dnstest.New(t, dnstest.Zone{
		"grey.test.":     {"MX 10 mx1.grey.test.", "MX 20 mx2.grey.test."},
		"drop.test.":     {"MX 10 mx1.drop.test.", "MX 20 mx2.drop.test."},
		"mx1.grey.test.": {"A 127.0.0.2"},
		"mx1.drop.test.": {"A 127.0.0.3"},
		"mx2.grey.test.": {"A 127.0.0.1"},
		"mx2.drop.test.": {"A 127.0.0.1"},
	})
	c, _ := relay.New(relay.Config{Port: p, Resolver: dns.Resolver(), Logger: quiet, DisableReuse: true})
	defer c.Close()
	res, err := send(t, c, "", []string{"a@grey.test", "b@grey.test"}, message("grey"))
	if err != nil || res[0].Status != relay.Delivered || res[1].Status != relay.Delivered || res[0].Host != "mx2.grey.test" {
		t.Fatalf("greylisted at the primary: %v %+v", err, res)
	}
	res, _ = send(t, c, "", []string{"a@drop.test"}, message("drop"))
	if r := res[0]; r.Status != relay.Temporary || r.Host != "mx1.drop.test" || r.BeforeData {
		t.Fatalf("dropped after the data: %+v", r)
	}
	if n := len(backup.Messages(t)); n != 1 {
		t.Errorf("backup MX got %d messages, want 1 (the greylisted one only)", n)
	}
}
