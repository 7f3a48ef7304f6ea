package managesieve

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// run runs a client program with a deadline and returns its combined output.
func run(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s hung; output:\n%s", cmd.Args[0], out)
	}
	return string(out), err
}

// TestSieveConnect drives sieve-connect (Debian sieve-connect), a real ManageSieve client:
// over STARTTLS it uploads a script, lists, activates, downloads, checks, deactivates and
// deletes it.
func TestSieveConnect(t *testing.T) {
	bin := testenv.Program(t, "sieve-connect")
	r := startServer(t, Config{})
	host, port, _ := strings.Cut(r.addr, ":")
	dir := t.TempDir()
	script := "require [\"fileinto\", \"vacation\"];\nif header :contains \"subject\" \"sale\" { fileinto \"Junk\"; }\nvacation :days 3 \"away\";\n"
	local := writeFile(t, dir, "vac.sieve", script)
	bad := writeFile(t, dir, "bad.sieve", "require \"nope\";\n")
	sc := func(args ...string) (string, error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pw.WriteString("secret pw\n")
		pw.Close()
		defer pr.Close()
		cmd := exec.Command(bin, append([]string{"--server", host, "--port", port, "--user", "alice@example.org",
			"--passwordfd", "3", "--notlsverify", "--authmech", "PLAIN"}, args...)...)
		cmd.ExtraFiles = []*os.File{pr}
		return run(t, cmd)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := sc(args...)
		if err != nil {
			t.Fatalf("sieve-connect %v: %v\n%s", args, err, out)
		}
		return out
	}
	must("--upload", "--localsieve", local, "--remotesieve", "vacation")
	if out := must("--list"); !strings.Contains(out, "vacation") || strings.Contains(out, "ACTIVE") && strings.Contains(out, "vacation ACTIVE") {
		t.Fatalf("list after upload:\n%s", out)
	}
	must("--activate", "--remotesieve", "vacation")
	if out := must("--list"); !strings.Contains(out, "vacation") || !strings.Contains(strings.ToUpper(out), "ACTIVE") {
		t.Fatalf("list after activate:\n%s", out)
	}
	down := dir + "/down.sieve"
	must("--download", "--remotesieve", "vacation", "--localsieve", down)
	if b, err := os.ReadFile(down); err != nil || string(b) != script {
		t.Fatalf("downloaded %q, %v", b, err)
	}
	if out, err := sc("--checkscript", "--localsieve", bad); err == nil {
		t.Fatalf("checkscript of a bad script succeeded:\n%s", out)
	} else if !strings.Contains(out, "nope") {
		t.Fatalf("checkscript did not show the compiler's error:\n%s", out)
	}
	must("--checkscript", "--localsieve", local)
	if out, err := sc("--upload", "--localsieve", bad, "--remotesieve", "bad"); err == nil {
		t.Fatalf("upload of a bad script succeeded:\n%s", out)
	}
	if out, err := sc("--delete", "--remotesieve", "vacation"); err == nil {
		t.Fatalf("delete of the active script succeeded:\n%s", out)
	}
	must("--deactivate")
	must("--delete", "--remotesieve", "vacation")
	if out := must("--list"); strings.Contains(out, "vacation") {
		t.Fatalf("list after delete:\n%s", out)
	}
	sts, err := r.st.Open(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer sts.Release()
	if list, _ := sts.Scripts().List(context.Background()); len(list) != 0 {
		t.Fatalf("store holds %+v", list)
	}
}

// TestSieveshell drives Cyrus's sieveshell (Debian cyrus-admin) through a command file:
// put, list, activate, get, deactivate, delete. Debian's sieveshell never sends STARTTLS
// (it authenticates at once, even when STARTTLS is offered), so it runs against a
// trusted listener, as an admin's loopback migration would.
func TestSieveshell(t *testing.T) {
	bin := testenv.Program(t, "sieveshell")
	r := startServer(t, Config{Trusted: true})
	dir := t.TempDir()
	script := "require \"fileinto\";\nfileinto \"Archive\";\n"
	writeFile(t, dir, "arch.sieve", script)
	cmds := writeFile(t, dir, "cmds", "put arch.sieve arch\nlist\nactivate arch\nlist\nget arch got.sieve\ndeactivate\ndelete arch\nlist\n")
	cmd := exec.Command(bin, "--user=bob@example.org", "--authname=bob@example.org", "--password=pw2", "--execfile="+cmds, r.addr)
	cmd.Dir = dir
	out, err := run(t, cmd)
	if err != nil {
		t.Fatalf("sieveshell: %v\n%s", err, out)
	}
	t.Logf("sieveshell:\n%s", out)
	if b, err := os.ReadFile(dir + "/got.sieve"); err != nil || string(b) != script {
		t.Fatalf("got %q, %v\n%s", b, err, out)
	}
	if !strings.Contains(out, "arch  <- active script") {
		t.Fatalf("list did not show the active script:\n%s", out)
	}
}
