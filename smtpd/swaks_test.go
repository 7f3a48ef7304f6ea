package smtpd_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// swaks runs the real swaks client against addr; it returns its transcript and whether
// it succeeded.
func swaks(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	path := testenv.Program(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, append([]string{"--timeout", "20"}, args...)...).CombinedOutput()
	if strings.Contains(string(out), "TLS not available") {
		testenv.Unavailable(t, "swaks has no TLS support (libnet-ssleay-perl, libio-socket-ssl-perl)")
	}
	return string(out), err == nil
}

func TestSwaks(t *testing.T) {
	ts := start(t, nil)
	mx, sub, subs := ts.addr("mx"), ts.addr("submission"), ts.addr("submissions")

	out, ok := swaks(t, "--server", mx, "--helo", "client.example.net", "--from", "a@example.net", "--to", "bob@example.test", "--header", "Subject: swaks test")
	if !ok || !strings.Contains(out, "250 2.0.0 OK queued as ") {
		t.Fatalf("plain delivery failed:\n%s", out)
	}
	if got := ts.q.messages(); len(got) != 1 || got[0].Env.To[0] != "bob@example.test" || !strings.Contains(string(got[0].Data), "Subject: swaks test") {
		t.Fatalf("queue after swaks: %+v", got)
	}

	// What the rules in testdata/rules.yaml and relay control refuse on the MX.
	for _, r := range []struct {
		what, want string
		args       []string
	}{
		{"relay through mx", "554 5.7.1 Relay access denied", []string{"--from", "a@example.net", "--to", "victim@other.test"}},
		{"percent hack", "554 5.7.1 Relay access denied", []string{"--from", "a@example.net", "--to", "user%other.test@example.test"}},
		{"helo rule", "550 5.7.1 bad helo bad.helo.test", []string{"--helo", "bad.helo.test", "--from", "a@example.net", "--to", "bob@example.test"}},
		{"connect rule", "554 5.7.1 client 127.0.0.2 blocked", []string{"--local-interface", "127.0.0.2", "--from", "a@example.net", "--to", "bob@example.test"}},
		{"mail rule", "553 5.7.1 sender x@spammer.test blocked", []string{"--from", "x@spammer.test", "--to", "bob@example.test"}},
		{"rcpt rule", "550 5.7.1 recipient blocked", []string{"--from", "a@example.net", "--to", "blocked@example.test"}},
		{"data rule", "554 5.7.9 spam refused", []string{"--from", "a@example.net", "--to", "bob@example.test", "--header", "Subject: SPAM"}},
	} {
		if out, ok := swaks(t, append([]string{"--server", mx}, r.args...)...); ok || !strings.Contains(out, r.want) {
			t.Errorf("%s:\n%s", r.what, out)
		}
	}

	// AUTH is not offered before STARTTLS; swaks gives up.
	out, ok = swaks(t, "--server", sub, "--from", "alice@example.test", "--to", "x@elsewhere.test", "-a", "PLAIN", "-au", "alice@example.test", "-ap", "secret")
	if ok {
		t.Errorf("AUTH without TLS succeeded:\n%s", out)
	}
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out, ok = swaks(t, "--server", sub, "--tls", "--from", "alice@example.test", "--to", "x@elsewhere.test", "-a", mech, "-au", "alice@example.test", "-ap", "secret")
		if !ok || !strings.Contains(out, "235 2.0.0 Authentication succeeded") {
			t.Errorf("AUTH %s over STARTTLS:\n%s", mech, out)
		}
	}
	out, ok = swaks(t, "--server", sub, "--tls", "--from", "alice@example.test", "--to", "x@elsewhere.test", "-a", "PLAIN", "-au", "alice@example.test", "-ap", "wrong")
	if ok || !strings.Contains(out, "535 5.7.8") {
		t.Errorf("bad password:\n%s", out)
	}
	out, ok = swaks(t, "--server", subs, "--tlsc", "--from", "alice@example.test", "--to", "x@elsewhere.test", "-a", "PLAIN", "-au", "alice@example.test", "-ap", "secret")
	if !ok {
		t.Errorf("implicit TLS:\n%s", out)
	}
	if n := len(ts.q.messages()); n != 4 {
		t.Errorf("queued %d messages, want 4", n)
	}
}
