package virus_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/virus"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

func newClient(t testing.TB, cfg virus.Config) *virus.Client {
	t.Helper()
	c, err := virus.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// mimeMessage wraps attachment in a multipart message as base64, the way mail carries it.
func mimeMessage(name string, attachment []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\nTo: b@example.net\r\nSubject: see attached\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n" +
		"--xyz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, the file is attached.\r\n\r\n" +
		"--xyz\r\nContent-Type: application/octet-stream; name=\"" + name + "\"\r\n" +
		"Content-Disposition: attachment; filename=\"" + name + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--xyz--\r\n")
	return b.Bytes()
}

func zipOf(t testing.TB, name string, content []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(clamdtest.TestFilesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRealClamdFindsSamples(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	eicar := []byte(clamdtest.EICAR)
	infected := []struct {
		name string
		data []byte
		sig  string
	}{
		{"eicar plain", eicar, clamdtest.EICARSignature},
		{"eicar base64 in MIME", mimeMessage("eicar.com", eicar), clamdtest.EICARSignature},
		{"eicar in zip", zipOf(t, "eicar.com", eicar), clamdtest.EICARSignature},
		{"eicar zip in MIME", mimeMessage("eicar.zip", zipOf(t, "eicar.com", eicar)), clamdtest.EICARSignature},
		{"clam.exe", testFile(t, "clam.exe"), clamdtest.ClamExeSignature},
		{"clam.zip", testFile(t, "clam.zip"), clamdtest.ClamExeSignature},
		{"clam.mail", testFile(t, "clam.mail"), clamdtest.ClamExeSignature},
	}
	for _, addr := range []string{d.TCPAddr(), d.UnixAddr()} {
		for _, sessions := range []bool{true, false} {
			c := newClient(t, virus.Config{Addrs: []string{addr}, NoSessions: !sessions, ChunkSize: 1024})
			for _, tc := range infected {
				// Two rounds: the second reuses the sessions of the first.
				for round := range 2 {
					res, err := c.Scan(t.Context(), bytes.NewReader(tc.data))
					if err != nil {
						t.Fatalf("%s sessions=%v %s round %d: %v", addr, sessions, tc.name, round, err)
					}
					// Local databases add .UNOFFICIAL; compare by prefix, never by a fixed name.
					if !res.Infected || !strings.HasPrefix(res.Signature, tc.sig) || res.Daemon != addr {
						t.Errorf("%s sessions=%v %s: got %+v, want infected by %s*", addr, sessions, tc.name, res, tc.sig)
					}
					if res.Size != int64(len(tc.data)) {
						t.Errorf("%s: streamed %d bytes, want %d", tc.name, res.Size, len(tc.data))
					}
				}
			}
		}
	}
}

func TestRealClamdPassesCleanMessages(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	c := newClient(t, virus.Config{Addrs: []string{d.UnixAddr(), d.TCPAddr()}})
	msgs := map[string][]byte{
		"text":             []byte("Subject: hi\r\n\r\nNothing to see here.\r\n"),
		"empty":            {},
		"clean attachment": mimeMessage("report.pdf", bytes.Repeat([]byte("%PDF-1.4 harmless "), 500)),
		"clean zip":        zipOf(t, "notes.txt", []byte("just notes")),
	}
	// A 3 MB random body crosses many chunks.
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big)
	msgs["3MB random"] = big
	corpus := testenv.Corpus(t)
	for _, sub := range []string{"test/ham", "test/spam"} {
		files, _ := filepath.Glob(filepath.Join(corpus, sub, "*.eml"))
		if len(files) == 0 {
			t.Fatalf("no messages under %s", filepath.Join(corpus, sub))
		}
		for _, f := range files[:min(25, len(files))] {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			msgs[filepath.Base(f)] = b
		}
	}
	for name, m := range msgs {
		res, err := c.Scan(t.Context(), bytes.NewReader(m))
		if err != nil || res.Infected {
			t.Errorf("%s: got %+v, %v; want clean", name, res, err)
		}
	}
}

func TestRealClamdStreamMaxLength(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{StreamMaxLength: "1M"})
	small := newClient(t, virus.Config{Addrs: []string{d.TCPAddr()}})
	for _, size := range []int{2 << 20, 20 << 20} {
		big := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		res, err := small.Scan(t.Context(), bytes.NewReader(big))
		if !errors.Is(err, virus.ErrTooLarge) {
			t.Fatalf("%d bytes through StreamMaxLength 1M: got %+v, %v; want ErrTooLarge", size, res, err)
		}
	}
	// The daemon still works, and a message under the limit is scanned.
	res, err := small.Scan(t.Context(), strings.NewReader(clamdtest.EICAR))
	if err != nil || !res.Infected {
		t.Fatalf("after the size limit: %+v, %v", res, err)
	}
	// max_size stops streaming before the daemon has to refuse.
	capped := newClient(t, virus.Config{Addrs: []string{d.TCPAddr()}, MaxSize: 1000})
	if _, err := capped.Scan(t.Context(), bytes.NewReader(make([]byte, 1001))); !errors.Is(err, virus.ErrTooLarge) {
		t.Fatalf("max_size: got %v, want ErrTooLarge", err)
	}
	if res, err := capped.Scan(t.Context(), bytes.NewReader(make([]byte, 1000))); err != nil || res.Infected {
		t.Fatalf("max_size exactly reached: %+v, %v", res, err)
	}
}

func TestRealClamdKilledThenBack(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	p, err := virus.New(virus.Config{Addrs: []string{d.TCPAddr(), d.UnixAddr()}, Cooldown: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Client()
	t.Cleanup(func() { _ = c.Close() })
	tx := &policy.Transaction{Message: policy.NewMessage([]byte("Subject: x\r\n\r\n"+clamdtest.EICAR+"\r\n"), time.Now())}
	if r := p.CheckData(t.Context(), tx); r.Status != policy.StatusFail {
		t.Fatalf("before kill: %+v", r)
	}
	d.Kill()
	for i := range 5 {
		r := p.CheckData(t.Context(), tx)
		if r.Status != policy.StatusTempError || r.Reason != virus.ReasonUnavailable || !errors.Is(r.Err, virus.ErrUnavailable) {
			t.Fatalf("scan %d after kill: %+v, want temperror virus.unavailable", i, r)
		}
	}
	// Both daemons are out of rotation now (cooldown one hour): a scan fails at once.
	start := time.Now()
	if _, err := c.Scan(t.Context(), strings.NewReader("x")); !errors.Is(err, virus.ErrUnavailable) || !strings.Contains(err.Error(), "out of rotation") {
		t.Fatalf("with breakers open: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("scan with every breaker open took %s", el)
	}
	d.Restart()
	// A PING health check brings them back before the cooldown ends.
	for _, st := range c.Ping(t.Context()) {
		if st.Err != nil || !st.InRotation {
			t.Fatalf("after restart: %+v", st)
		}
	}
	if r := p.CheckData(t.Context(), tx); r.Status != policy.StatusFail || !strings.HasPrefix(r.Facts["virus"].(string), clamdtest.EICARSignature) {
		t.Fatalf("after restart: %+v", r)
	}
}

func TestRealClamdFailover(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	// A dead address first: every scan still succeeds through the live daemon, and the
	// dead one leaves the rotation after three failures.
	dead := "unix:" + filepath.Join(t.TempDir(), "nothing.sock")
	c := newClient(t, virus.Config{Addrs: []string{dead, d.TCPAddr()}, Cooldown: time.Hour})
	for i := range 10 {
		res, err := c.Scan(t.Context(), strings.NewReader(clamdtest.EICAR))
		if err != nil || !res.Infected || res.Daemon != d.TCPAddr() {
			t.Fatalf("scan %d: %+v, %v", i, res, err)
		}
	}
	st := c.Ping(t.Context())
	if st[0].Err == nil || st[0].InRotation || st[1].Err != nil || !st[1].InRotation {
		t.Fatalf("status: %+v", st)
	}
}

func TestPolicyOnRealClamd(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{StreamMaxLength: "1M"})
	p, err := virus.New(virus.Config{Addrs: []string{d.UnixAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(b []byte) *policy.Transaction {
		return &policy.Transaction{Message: policy.NewMessage(b, time.Now())}
	}
	cases := []struct {
		name   string
		tx     *policy.Transaction
		status policy.Status
		reason string
	}{
		{"infected", msg(mimeMessage("e.com", []byte(clamdtest.EICAR))), policy.StatusFail, virus.ReasonFound},
		{"clean", msg([]byte("Subject: hi\r\n\r\nhello\r\n")), policy.StatusPass, virus.ReasonClean},
		{"too large", msg(bytes.Repeat([]byte("a"), 3<<20)), policy.StatusPermError, virus.ReasonTooLarge},
		{"no message", &policy.Transaction{}, policy.StatusNone, virus.ReasonNoMessage},
	}
	decl := p.DeclareFacts()
	for _, tc := range cases {
		r := p.CheckData(t.Context(), tc.tx)
		if r.Status != tc.status || r.Reason != tc.reason {
			t.Errorf("%s: got %s %s (%v), want %s %s", tc.name, r.Status, r.Reason, r.Err, tc.status, tc.reason)
		}
		for k, v := range r.Facts {
			if ex, ok := decl[k]; !ok {
				t.Errorf("%s: fact %q is not declared", tc.name, k)
			} else if fmt.Sprintf("%T", ex) != fmt.Sprintf("%T", v) {
				t.Errorf("%s: fact %q is %T, declared %T", tc.name, k, v, ex)
			}
		}
	}
	r := p.CheckData(t.Context(), cases[0].tx)
	if v, _ := r.Facts["virus"].(string); !strings.HasPrefix(v, clamdtest.EICARSignature) || !strings.HasSuffix(v, ".UNOFFICIAL") {
		t.Errorf("virus fact %q", v)
	}
}

func TestScanFilesAndPingAll(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	c := newClient(t, virus.Config{Addrs: []string{d.TCPAddr()}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	paths := []string{
		write("clean.eml", []byte("Subject: hi\r\n\r\nhello\r\n")),
		write("eicar.txt", []byte(clamdtest.EICAR)),
		filepath.Join(clamdtest.TestFilesDir, "clam.zip"),
		filepath.Join(dir, "missing.eml"),
	}
	for _, j := range []int{1, 3} {
		var out bytes.Buffer
		sum, err := virus.ScanFiles(t.Context(), c, paths, &out, virus.ScanOptions{Concurrency: j})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 4 || lines[0] != paths[0]+": OK" ||
			!strings.HasPrefix(lines[1], paths[1]+": "+clamdtest.EICARSignature) || !strings.HasSuffix(lines[1], " FOUND") ||
			!strings.HasPrefix(lines[2], paths[2]+": "+clamdtest.ClamExeSignature) ||
			!strings.HasPrefix(lines[3], paths[3]+": ERROR: ") {
			t.Errorf("-j %d output:\n%s", j, out.String())
		}
		if sum.Scanned != 3 || sum.Infected != 2 || sum.Errors != 1 || sum.ExitCode() != 2 {
			t.Errorf("-j %d summary %+v", j, sum)
		}
	}
	var out bytes.Buffer
	if err := virus.PingAll(t.Context(), c, &out); err != nil || !strings.HasPrefix(out.String(), d.TCPAddr()+": PONG ") || !strings.Contains(out.String(), "ClamAV") {
		t.Fatalf("PingAll: %v\n%s", err, out.String())
	}
	c2 := newClient(t, virus.Config{Addrs: []string{d.TCPAddr(), "tcp:127.0.0.1:1"}})
	out.Reset()
	if err := virus.PingAll(t.Context(), c2, &out); err == nil || !strings.Contains(out.String(), "tcp:127.0.0.1:1: ERROR: ") {
		t.Fatalf("PingAll with a dead daemon: %v\n%s", err, out.String())
	}
}

// nonSeeker hides the Seek method of a reader.
type nonSeeker struct{ io.Reader }

func TestRealClamdConcurrent(t *testing.T) {
	d := clamdtest.StartClamd(t, clamdtest.Options{})
	c := newClient(t, virus.Config{Addrs: []string{d.TCPAddr(), d.UnixAddr()}, MaxIdle: 4})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			for j := range 20 {
				data := []byte("Subject: clean\r\n\r\nhello\r\n")
				if (i+j)%3 == 0 {
					data = mimeMessage("e.com", []byte(clamdtest.EICAR))
				}
				res, err := c.Scan(ctx, nonSeeker{bytes.NewReader(data)})
				if err != nil {
					errs <- err
					return
				}
				if res.Infected != ((i+j)%3 == 0) {
					errs <- errors.New("wrong verdict under concurrency")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
