package delivery

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/spool"
)

const crashEnv = "PORTCULLIS_DELIVERY_CRASH_DIR"

// TestHelperDeliveryProcess is the child of TestDeliveryCrash: a queue manager delivering
// the spool into maildirs until it is killed.
func TestHelperDeliveryProcess(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestDeliveryCrash")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		fail(err)
	}
	md := newTestMaildir(filepath.Join(dir, "mail"))
	router := testRouter(md, nil)
	q, err := New(Config{Concurrency: 8, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sp, router)
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	fail(q.Run(context.Background())) // returns only on error; the parent kills us
}

// queued counts the messages in the spool, as `portcullis queue list` would.
func queued(t *testing.T, dir string) int {
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ids, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// TestDeliveryCrash kills a delivering queue manager with SIGKILL at random moments until
// the queue is empty, then checks that every message reached every recipient at least
// once (a kill between the maildir write and the spool removal may duplicate, never lose).
func TestDeliveryCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	rcpts := []string{"bob@example.test", "carol@example.test"}
	for i := range n {
		msg := fmt.Sprintf("Subject: crash %d\r\nX-Seq: %d\r\n\r\nbody %d\r\n", i, i, i)
		if _, err := sp.Enqueue(context.Background(), spool.Envelope{From: "a@example.org", To: rcpts, ReceivedAt: time.Now()}, bytes.NewReader([]byte(msg))); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()

	// Several kills at random moments of the delivery, then a last run that drains the queue.
	const kills = 8
	for round := 0; round <= kills; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDeliveryProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make([]byte, 6)
		if _, err := io.ReadFull(stdout, ready); err != nil {
			t.Fatalf("round %d: child did not start: %v %s", round, err, stderr.String())
		}
		if round < kills {
			time.Sleep(time.Duration(10+rand.IntN(120)) * time.Millisecond)
		} else {
			deadline := time.Now().Add(60 * time.Second)
			for {
				n := queued(t, dir)
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("queue not drained: %d left", n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended on its own: %s", round, stderr.String())
		}
		t.Logf("round %d: %d messages left in the queue", round, queued(t, dir))
	}

	md := newTestMaildir(filepath.Join(dir, "mail"))
	seqRE := regexp.MustCompile(`X-Seq: (\d+)`)
	for _, r := range rcpts {
		d, _ := md.Path(r)
		es, err := d.Scan()
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]int, n)
		for _, e := range es {
			f, err := d.Open(e)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			m := seqRE.FindSubmatch(b)
			if m == nil {
				t.Fatalf("%s: message without X-Seq: %q", r, b)
			}
			var i int
			fmt.Sscan(string(m[1]), &i)
			seen[i]++
		}
		dups := 0
		for i, c := range seen {
			if c == 0 {
				t.Fatalf("%s: message %d lost", r, i)
			}
			dups += c - 1
		}
		t.Logf("%s: %d messages, %d duplicates from kills between delivery and removal", r, n, dups)
	}
}
