package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/proxy"
	"github.com/portcullis-mail/portcullis/sieve"
)

// compiler is the managesieve back-end's script checker: the sieve package's compiler.
type compiler struct{}

func (compiler) Check(script []byte) (string, error) {
	_, err := sieve.Compile(script, sieve.Options{})
	return "", err
}

func (compiler) Extensions() []string { return sieve.Supported() }

// TestManageSieve drives sieve-connect (a real ManageSieve client) through the proxy:
// STARTTLS, AUTHENTICATE PLAIN, then upload, activate and list on the user's back-end
// (the plaintext link, and in process with proxy_maybe); the script lands in the store.
func TestManageSieve(t *testing.T) {
	bin := testenv.Program(t, "sieve-connect")
	for _, host := range []string{"plain", "self"} {
		t.Run(host, func(t *testing.T) {
			dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: host}}
			e := start(t, proxy.Config{ProxyMaybe: true, LocalHost: "self", HealthInterval: 50 * time.Millisecond}, dir)
			h, port, _ := strings.Cut(e.sieveAddr, ":")
			script := "require [\"fileinto\"];\nif header :contains \"subject\" \"sale\" { fileinto \"Junk\"; }\n"
			local := filepath.Join(t.TempDir(), "s.sieve")
			if err := os.WriteFile(local, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			sc := func(args ...string) string {
				t.Helper()
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				pw.WriteString("secret pw\n")
				pw.Close()
				defer pr.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append([]string{"--server", h, "--port", port, "--user", "alice@example.org",
					"--passwordfd", "3", "--notlsverify", "--authmech", "PLAIN"}, args...)...)
				cmd.ExtraFiles = []*os.File{pr}
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("sieve-connect %v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			sc("--upload", "--localsieve", local, "--remotesieve", "sale")
			sc("--activate", "--remotesieve", "sale")
			if out := sc("--list"); !strings.Contains(out, "sale") {
				t.Fatalf("list: %s", out)
			}
			u, err := e.st.Open(context.Background(), "alice@example.org")
			if err != nil {
				t.Fatal(err)
			}
			defer u.Release()
			name, src, err := u.Scripts().Active(context.Background())
			if err != nil || name != "sale" || string(src) != script {
				t.Fatalf("active script %q %q, %v", name, src, err)
			}
		})
	}
}

// TestManageSieveRefusals: no password before TLS, a down back-end is TRYLATER.
func TestManageSieveRefusals(t *testing.T) {
	dir := dirMap{"alice@example.org": {Address: "alice@example.org", MailHost: "gone"}}
	e := start(t, proxy.Config{}, dir)
	c, r, first := mailboxtest.DialFrom(t, e.sieveAddr, "127.0.0.2")
	cl := &client{t: t, c: c, r: r}
	if !strings.Contains(first, "IMPLEMENTATION") {
		t.Fatalf("greeting %q", first)
	}
	cl.expect("\"STARTTLS\"")
	cl.expect("OK")
	cl.send("AUTHENTICATE \"PLAIN\" \"" + plain("alice@example.org", "secret pw") + "\"")
	cl.expect("NO (ENCRYPT-NEEDED)")
	cl.send("STARTTLS")
	cl.expect("OK")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	cl.c, cl.r = tc, bufio.NewReader(tc)
	cl.expect("\"SASL\" \"PLAIN\"")
	cl.expect("OK")
	cl.send("AUTHENTICATE \"PLAIN\" \"" + plain("alice@example.org", "wrong") + "\"")
	cl.expect("NO \"Authentication failed\"")
	// The literal form, and a back-end that cannot be reached.
	resp := plain("alice@example.org", "secret pw")
	cl.send("AUTHENTICATE \"PLAIN\" {" + strconv.Itoa(len(resp)) + "+}\r\n" + resp)
	cl.expect("NO (TRYLATER)")
}
