package local

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/delivery"
	"github.com/portcullis-mail/portcullis/spool"
	"github.com/portcullis-mail/portcullis/store"
)

type sieveRig struct {
	d  *Deliverer
	st *store.Store
	sp *spool.Spool
}

func newSieveRig(t testing.TB, cfg SieveConfig) *sieveRig {
	t.Helper()
	st, err := store.New(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sp, err := spool.Open(t.TempDir(), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	d, err := New(Config{Store: st, Sieve: cfg, Enqueue: sp.Enqueue, Hostname: "mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	return &sieveRig{d: d, st: st, sp: sp}
}

func (r *sieveRig) setScript(t testing.TB, user, src string) {
	t.Helper()
	sc, err := store.OpenScripts(context.Background(), r.st.Config(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := (&Checker{opt: r.d.sieve.Load().cfg.Options("+", nil)}).Check([]byte(src)); err != nil {
		t.Fatal(err)
	}
	if err := sc.Put(context.Background(), "main", []byte(src), store.ScriptLimits{}); err != nil {
		t.Fatal(err)
	}
	if err := sc.SetActive(context.Background(), "main"); err != nil {
		t.Fatal(err)
	}
}

func (r *sieveRig) deliver(t *testing.T, from, rcpt, msg string) error {
	t.Helper()
	return r.d.Deliver(context.Background(), rcpt, spool.Envelope{From: from, To: []string{rcpt}}, strings.NewReader(msg))
}

// queued returns the envelopes and messages in the spool.
func (r *sieveRig) queued(t *testing.T) ([]spool.Envelope, []string) {
	t.Helper()
	ids, err := r.sp.List()
	if err != nil {
		t.Fatal(err)
	}
	var envs []spool.Envelope
	var msgs []string
	for _, id := range ids {
		env, m, err := r.sp.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(m)
		m.Close()
		envs = append(envs, env)
		msgs = append(msgs, string(b))
	}
	return envs, msgs
}

// folder returns the messages of a user's folder and their flags.
func folder(t *testing.T, st *store.Store, user, name string) ([]string, [][]string) {
	t.Helper()
	ctx := context.Background()
	u, err := st.Open(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	mb, msgs, err := u.Messages(ctx, name)
	if errors.Is(err, store.ErrNoMailbox) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var flags [][]string
	for _, m := range msgs {
		f, err := u.Open(mb, m)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
		flags = append(flags, m.Flags)
	}
	return out, flags
}

const plainMsg = "From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: hello\r\nMessage-ID: <m1@example.net>\r\n\r\nHi Alice.\r\n"

func TestSieveFileInto(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", `require ["fileinto", "imap4flags", "mailbox"];
if header :contains "subject" "hello" { fileinto :create :flags ["\\Flagged", "work"] "Projects"; }
if header :contains "subject" "other" { fileinto "Missing"; }
if header :contains "subject" "drop" { discard; }
`)
	if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
		t.Fatal(err)
	}
	msgs, flags := folder(t, r.st, "alice@example.org", "Projects")
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "Return-Path: <carol@example.net>\r\nDelivered-To: alice@example.org\r\n") {
		t.Fatalf("Projects = %q", msgs)
	}
	if !slices.Contains(flags[0], `\Flagged`) || !slices.Contains(flags[0], "work") {
		t.Fatalf("flags = %q", flags[0])
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 0 {
		t.Fatalf("INBOX got %d messages", len(in))
	}
	// fileinto a missing folder without :create: INBOX.
	if err := r.deliver(t, "carol@example.net", "alice@example.org", strings.Replace(plainMsg, "hello", "other", 1)); err != nil {
		t.Fatal(err)
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 1 {
		t.Fatalf("INBOX got %d messages", len(in))
	}
	if m, _ := folder(t, r.st, "alice@example.org", "Missing"); m != nil {
		t.Fatal("Missing was created without :create")
	}
	// discard: nothing stored.
	if err := r.deliver(t, "carol@example.net", "alice@example.org", strings.Replace(plainMsg, "hello", "drop", 1)); err != nil {
		t.Fatal(err)
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 1 {
		t.Fatalf("INBOX got %d messages after discard", len(in))
	}
}

func TestSieveReject(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", "require \"reject\";\nreject \"not wanted\nhere\";\n")
	err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg)
	var pe *delivery.PermanentError
	if !errors.As(err, &pe) || pe.Reply != "550 5.7.1 not wanted here" {
		t.Fatalf("reject = %v", err)
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 0 {
		t.Fatal("a rejected message was stored")
	}
}

func TestSieveRedirect(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", "redirect \"dave@example.com\";\n")
	for range 2 {
		if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	envs, msgs := r.queued(t)
	if len(envs) != 1 {
		t.Fatalf("%d redirects queued, want 1 (the second within 12h is a duplicate)", len(envs))
	}
	if envs[0].From != "carol@example.net" || !slices.Equal(envs[0].To, []string{"dave@example.com"}) {
		t.Fatalf("envelope %+v", envs[0])
	}
	if !strings.HasPrefix(msgs[0], "Delivered-To: alice@example.org\r\nX-Sieve-Redirected-From: alice@example.org\r\nFrom: Carol") {
		t.Fatalf("redirected message %q", msgs[0])
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 0 {
		t.Fatal("redirect without :copy kept a copy")
	}
	// A message alice already redirected once comes back: a loop, kept instead.
	looped := "X-Sieve-Redirected-From: alice@example.org\r\n" + strings.Replace(plainMsg, "m1@", "m2@", 1)
	if err := r.deliver(t, "carol@example.net", "alice@example.org", looped); err != nil {
		t.Fatal(err)
	}
	if envs, _ := r.queued(t); len(envs) != 1 {
		t.Fatalf("loop redirected: %d queued", len(envs))
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 1 {
		t.Fatal("the looping message was not kept")
	}
}

// TestSieveRedirectEnvelopeFrom: redirect_envelope_from chooses the forwarded copy's
// sender (Pigeonhole's sieve_redirect_envelope_from), and a typo refuses to start.
func TestSieveRedirectEnvelopeFrom(t *testing.T) {
	r := newSieveRig(t, SieveConfig{RedirectEnvelopeFrom: "recipient"})
	r.setScript(t, "alice@example.org", "redirect \"dave@example.com\";\n")
	if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
		t.Fatal(err)
	}
	if envs, _ := r.queued(t); len(envs) != 1 || envs[0].From != "alice@example.org" {
		t.Fatalf("envelopes %+v, want one from alice@example.org", envs)
	}
	st, err := store.New(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(Config{Store: st, Sieve: SieveConfig{RedirectEnvelopeFrom: "recipent"}}); err == nil || !strings.Contains(err.Error(), "redirect_envelope_from") {
		t.Fatalf("a bad redirect_envelope_from: %v", err)
	}
}

func TestSieveVacation(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", "require \"vacation\";\nvacation :days 7 :subject \"Away\" \"I am away.\";\n")
	for range 2 {
		if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
			t.Fatal(err)
		}
	}
	list := "List-Id: <l.example.net>\r\n" + strings.Replace(plainMsg, "carol@", "erin@", -1)
	if err := r.deliver(t, "erin@example.net", "alice@example.org", list); err != nil {
		t.Fatal(err)
	}
	envs, msgs := r.queued(t)
	if len(envs) != 1 {
		t.Fatalf("%d vacation replies, want 1", len(envs))
	}
	if envs[0].From != "" || !slices.Equal(envs[0].To, []string{"carol@example.net"}) {
		t.Fatalf("reply envelope %+v", envs[0])
	}
	for _, want := range []string{"Auto-Submitted: auto-replied", "In-Reply-To: <m1@example.net>", "Subject: Away", "\r\n\r\nI am away.\r\n", "From: <alice@example.org>"} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("reply lacks %q:\n%s", want, msgs[0])
		}
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 3 {
		t.Fatalf("INBOX holds %d, want 3 (vacation keeps)", len(in))
	}
}

func TestSieveBeforeAfterAndBroken(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "10-spam.sieve"), []byte("require [\"fileinto\",\"imap4flags\"];\nif header :contains \"X-Spam\" \"yes\" { fileinto \"Junk\"; }\naddflag \"before\";\n"), 0o600)
	after := filepath.Join(t.TempDir(), "after.sieve")
	os.WriteFile(after, []byte("require \"imap4flags\";\naddflag \"after\";\n"), 0o600)
	r := newSieveRig(t, SieveConfig{Before: []string{dir}, After: []string{after}})
	// A user script that fails to compile (stored behind the checker's back) is skipped.
	sc, _ := store.OpenScripts(context.Background(), r.st.Config(), "alice@example.org")
	sc.Put(context.Background(), "bad", []byte("fileinto \"x\""), store.ScriptLimits{})
	sc.SetActive(context.Background(), "bad")
	sc.Close()
	if err := r.deliver(t, "carol@example.net", "alice@example.org", "X-Spam: yes\r\n"+plainMsg); err != nil {
		t.Fatal(err)
	}
	if m, _ := folder(t, r.st, "alice@example.org", "Junk"); len(m) != 1 {
		t.Fatalf("Junk holds %d", len(m))
	}
	// A broken global script on reload leaves the old ones in force.
	os.WriteFile(after, []byte("addflag \"x\""), 0o600)
	if err := r.d.ReloadSieve(); err == nil {
		t.Fatal("reloading a broken after script succeeded")
	}
	if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
		t.Fatal(err)
	}
	in, flags := folder(t, r.st, "alice@example.org", store.Inbox)
	if len(in) != 1 || !slices.Contains(flags[0], "before") || !slices.Contains(flags[0], "after") {
		t.Fatalf("INBOX %d messages, flags %q", len(in), flags)
	}
}

// spamtest reads the rules' total score the spool recorded, scaled by spam_score_max.
func TestSieveSpamtest(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", `require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; }
`)
	for _, score := range []float64{8, 1} {
		env := spool.Envelope{From: "carol@example.net", To: []string{"alice@example.org"}, Score: score}
		if err := r.d.Deliver(context.Background(), "alice@example.org", env, strings.NewReader(plainMsg)); err != nil {
			t.Fatal(err)
		}
	}
	junk, _ := folder(t, r.st, "alice@example.org", "Junk")
	in, _ := folder(t, r.st, "alice@example.org", store.Inbox)
	if len(junk) != 1 || len(in) != 1 {
		t.Fatalf("Junk %d, INBOX %d; want 1 and 1", len(junk), len(in))
	}
}

// A script that fails at run time (here: more redirects than max_redirects) keeps the
// message in INBOX and sends nothing.
func TestSieveRuntimeErrorKeeps(t *testing.T) {
	r := newSieveRig(t, SieveConfig{})
	r.setScript(t, "alice@example.org", "redirect \"a@example.com\"; redirect \"b@example.com\"; redirect \"c@example.com\"; redirect \"d@example.com\"; redirect \"e@example.com\";\n")
	if err := r.deliver(t, "carol@example.net", "alice@example.org", plainMsg); err != nil {
		t.Fatal(err)
	}
	if in, _ := folder(t, r.st, "alice@example.org", store.Inbox); len(in) != 1 {
		t.Fatalf("INBOX holds %d, want the message kept", len(in))
	}
	if envs, _ := r.queued(t); len(envs) != 0 {
		t.Fatalf("%d redirects queued by a failed run", len(envs))
	}
}
