package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "PORTCULLIS_SPOOL_CRASH_DIR"

// Small log segments, so that kills also land during segment rotation.
var crashCfg = Config{SegmentSize: 256 << 10}

// crashBody is the message goroutine g sends as its k-th; the parent recomputes it.
func crashBody(g, k int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Subject: crash test %d/%d\r\n\r\n", g, k)
	for b.Len() < 4096+g*k%3000 {
		fmt.Fprintf(&b, "line %d of goroutine %d message %d\r\n", b.Len(), g, k)
	}
	return b.Bytes()
}

// TestHelperProcess is the child of TestCrash: it enqueues in a loop from several
// goroutines and prints "Q id g k" once Enqueue has returned the id, and "S id" once a
// status record for it is durable, until it is killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	s, err := Open(dir, crashCfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Fprintf(w, format, a...)
		w.Flush() // one write per line, so a kill cannot split it from its predecessor
		out.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := 0; ; k++ {
				env := Envelope{From: "a@example.org", To: []string{fmt.Sprintf("g%d@example.test", g)}}
				id, err := s.Enqueue(context.Background(), env, bytes.NewReader(crashBody(g, k)))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				say("Q %s %d %d\n", id, g, k)
				if k%4 == 0 {
					if err := s.Defer(id, time.Unix(1e9, 0), "crash test"); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(4)
					}
					say("S %s\n", id)
				}
			}
		})
	}
	wg.Wait()
}

// TestCrash kills a process that is enqueueing with SIGKILL at random moments, several
// times, and checks after each kill that every id it was given is queued and complete,
// every status record it was told about is there, and nothing partial is listed.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	type acked struct{ g, k int }
	want := map[string]acked{}
	wantStatus := map[string]bool{}
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a random moment once the child is busy: 20–300 ms after its first id.
		lines := make(chan []string, 1)
		first := make(chan struct{})
		go func() {
			var got []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if len(got) == 0 {
					close(first)
				}
				got = append(got, sc.Text())
			}
			if len(got) == 0 {
				close(first)
			}
			lines <- append(got, "") // as if split after a final newline
		}()
		select {
		case <-first:
		case <-time.After(20 * time.Second):
		}
		time.Sleep(time.Duration(20+rand.IntN(280)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := <-lines
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended on its own (%v): %s", round, werr, stderr.String())
		}
		n := 0
		for _, l := range got[:len(got)-1] { // the last element is after the final newline
			f := strings.Fields(l)
			switch {
			case len(f) == 4 && f[0] == "Q":
				var a acked
				fmt.Sscan(f[2], &a.g)
				fmt.Sscan(f[3], &a.k)
				want[f[1]] = a
				n++
			case len(f) == 2 && f[0] == "S":
				wantStatus[f[1]] = true
			default:
				t.Fatalf("round %d: bad line %q", round, l)
			}
		}
		if n == 0 {
			t.Fatalf("round %d: the child acknowledged nothing before the kill: %s", round, stderr.String())
		}

		tmpLeft, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		s, err := Open(dir, crashCfg)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		ids, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, id := range ids {
			listed[id] = true
			// Every listed entry is complete, acknowledged or not (a kill after the rename
			// but before the id was printed leaves a complete, unacknowledged message).
			env, m, err := s.Open(id)
			if err != nil {
				t.Fatalf("round %d: listed %s does not open: %v", round, id, err)
			}
			b, err := io.ReadAll(m)
			m.Close()
			if err != nil || int64(len(b)) != env.Size {
				t.Fatalf("round %d: %s: read %d bytes of %d: %v", round, id, len(b), env.Size, err)
			}
			if a, ok := want[id]; ok && !bytes.Equal(b, crashBody(a.g, a.k)) {
				t.Fatalf("round %d: %s holds the wrong bytes", round, id)
			}
		}
		for id := range want {
			if !listed[id] {
				t.Fatalf("round %d: acknowledged id %s is missing after the crash", round, id)
			}
		}
		for id := range wantStatus {
			if st, err := s.Status(id); err != nil || st.Attempts < 1 {
				t.Fatalf("round %d: acknowledged status record of %s is missing: %+v %v", round, id, st, err)
			}
		}
		if c, _ := os.ReadDir(filepath.Join(dir, "corrupt")); len(c) != 0 {
			t.Fatalf("round %d: %d corrupt queue files", round, len(c))
		}
		if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
			t.Fatalf("round %d: %d temporary files left after recovery", round, len(tmp))
		}
		t.Logf("round %d: %d acknowledged, %d queued in all, %d temporary files recovered", round, n, len(ids), len(tmpLeft))
		s.Close()
	}
}
