package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func openT(t testing.TB, dir string, cfg Config) *Spool {
	t.Helper()
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testEnv(to ...string) Envelope {
	return Envelope{From: "alice@example.org", To: to, ReceivedAt: time.Now().UTC().Truncate(time.Second), ClientIP: "192.0.2.1", HELO: "mx.example.org"}
}

func readAll(t *testing.T, s *Spool, id string) (Envelope, []byte) {
	t.Helper()
	env, m, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer m.Close()
	b, err := io.ReadAll(m)
	if err != nil {
		t.Fatal(err)
	}
	return env, b
}

func TestEnqueueRoundTrip(t *testing.T) {
	for _, noLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("log=%v", !noLog), func(t *testing.T) { testRoundTrip(t, Config{DisableLog: noLog}) })
	}
}

func testRoundTrip(t *testing.T, cfg Config) {
	dir := t.TempDir()
	s := openT(t, dir, cfg)
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	env := testEnv("bob@example.test", "carol@example.test")
	env.Notify = map[string]string{"bob@example.test": "NEVER"}
	id, err := s.Enqueue(context.Background(), env, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(id) {
		t.Fatalf("id %q is not valid", id)
	}
	got, b := readAll(t, s, id)
	if !bytes.Equal(b, body) {
		t.Fatalf("message = %q, want %q", b, body)
	}
	if got.ID != id || got.Size != int64(len(body)) || got.From != env.From || len(got.To) != 2 ||
		got.Notify["bob@example.test"] != "NEVER" || !got.ReceivedAt.Equal(env.ReceivedAt) {
		t.Fatalf("envelope = %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: the message is recovered intact.
	s2 := openT(t, dir, cfg)
	ids, err := s2.List()
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v, %v; want [%s]", ids, err, id)
	}
	if _, b := readAll(t, s2, id); !bytes.Equal(b, body) {
		t.Fatalf("after reopen message = %q", b)
	}
}

func TestEmptyAndLargeMessages(t *testing.T) {
	// Up to 64 KiB in the log, larger ones in files.
	s := openT(t, t.TempDir(), Config{MaxMessageSize: 1 << 20, MaxInlineSize: 64 << 10})
	for _, n := range []int{0, 1, 1000, 4096, copyBufBytes - headerLen, copyBufBytes - headerLen + 1, 3*copyBufBytes + 17, 1 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		// OneByteReader and HalfReader exercise short reads.
		for _, r := range []io.Reader{bytes.NewReader(body), iotest.HalfReader(bytes.NewReader(body)), iotest.DataErrReader(bytes.NewReader(body))} {
			id, err := s.Enqueue(context.Background(), testEnv("x@example.test"), r)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if env, b := readAll(t, s, id); !bytes.Equal(b, body) || env.Size != int64(n) {
				t.Fatalf("n=%d: got %d bytes, size %d", n, len(b), env.Size)
			}
		}
	}
}

func TestEnqueueFailuresLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{MaxMessageSize: 1000})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, testEnv("x@example.test"), bytes.NewReader(make([]byte, 1001))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: err = %v, want ErrTooLarge", err)
	}
	boom := errors.New("client went away")
	if _, err := s.Enqueue(ctx, testEnv("x@example.test"), iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("reader error: err = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Enqueue(cctx, testEnv("x@example.test"), strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	if _, err := s.Enqueue(ctx, testEnv(), strings.NewReader("x")); err == nil {
		t.Fatal("no recipients: want an error")
	}
	for _, sub := range []string{"tmp", "queue", "status"} {
		if des, _ := os.ReadDir(filepath.Join(dir, sub)); len(des) != 0 {
			t.Errorf("%s/ holds %d files after failed enqueues", sub, len(des))
		}
	}
}

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{DisableLog: true})
	ctx := context.Background()
	good, err := s.Enqueue(ctx, testEnv("a@example.test"), strings.NewReader("good\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// What a crash can leave: a half-written temporary file, a status file whose message was
	// removed. What a disk can leave: a truncated queue file.
	write := func(rel string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, rel), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmpID, orphanID, truncID := newID(), newID(), newID()
	write("tmp/"+tmpID, []byte("half a mess"))
	write("status/"+orphanID, []byte("x\n"))
	full, _ := os.ReadFile(filepath.Join(dir, "queue", good))
	write("queue/"+truncID, full[:len(full)-3])
	write("queue/README", []byte("not a message"))

	s2 := openT(t, dir, Config{DisableLog: true})
	ids, _ := s2.List()
	if len(ids) != 1 || ids[0] != good {
		t.Fatalf("List after recovery = %v, want [%s]", ids, good)
	}
	for rel, want := range map[string]bool{"tmp/" + tmpID: false, "status/" + orphanID: false, "corrupt/" + truncID: true, "corrupt/README": true, "queue/" + good: true} {
		_, err := os.Stat(filepath.Join(dir, rel))
		if (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", rel, err == nil, want)
		}
	}
}

func TestLockAndShared(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{})
	if _, err := Open(dir, Config{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	id, err := s.Enqueue(context.Background(), testEnv("a@example.test"), strings.NewReader("m"))
	if err != nil {
		t.Fatal(err)
	}
	// The admin commands attach with Shared and act on the owner's queue.
	adm := openT(t, dir, Config{Shared: true})
	if err := adm.Hold(id); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(id); !st.Held {
		t.Fatal("hold written through the shared handle is not seen by the owner")
	}
}

func TestStatusAndRemove(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{})
	id, err := s.Enqueue(context.Background(), testEnv("a@example.test", "b@example.test"), strings.NewReader("m"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(id)
	if err != nil || st.Held || !st.NextAttempt.IsZero() || len(st.Rcpts) != 0 {
		t.Fatalf("fresh status = %+v, %v", st, err)
	}
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetRecipient(id, "a@example.test", Delivered, "250 ok"))
	must(s.SetRecipient(id, "b@example.test", Deferred, "451 try later"))
	must(s.Defer(id, next, "451 try later"))
	if err := s.Remove(id); !errors.Is(err, ErrNotFinal) {
		t.Fatalf("Remove with a deferred recipient: err = %v, want ErrNotFinal", err)
	}
	must(s.Hold(id))

	// A crash tears the last line of the status file; the next append still parses.
	f, _ := os.OpenFile(filepath.Join(dir, "status", id), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`1234abcd {"op":"rel`)
	f.Close()
	s.Close()
	s = openT(t, dir, Config{})

	st, _ = s.Status(id)
	if !st.Held || !st.NextAttempt.Equal(next) || st.Attempts != 1 || st.LastReply != "451 try later" {
		t.Fatalf("status = %+v", st)
	}
	if st.Rcpts["a@example.test"].State != Delivered || st.Rcpts["b@example.test"].State != Deferred {
		t.Fatalf("rcpts = %+v", st.Rcpts)
	}
	must(s.Release(id))
	// A final state is never undone by a later non-final record.
	must(s.SetRecipient(id, "a@example.test", Deferred, "late duplicate"))
	must(s.SetRecipient(id, "b@example.test", Failed, "550 no such user"))
	st, _ = s.Status(id)
	if st.Held || !st.NextAttempt.IsZero() || st.Rcpts["a@example.test"].State != Delivered || !st.Done(Envelope{To: []string{"a@example.test", "b@example.test"}}) {
		t.Fatalf("status after release = %+v", st)
	}
	must(s.Remove(id))
	if _, _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "status", id)); !os.IsNotExist(err) {
		t.Fatalf("status file left after Remove: %v", err)
	}
	if err := s.Hold(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Hold of a removed message: %v", err)
	}
}

func TestBadIDs(t *testing.T) {
	s := openT(t, t.TempDir(), Config{})
	for _, id := range []string{"", "../../etc/passwd", "0123456789abcdefghiJ", "0123456789abcdefghiw", strings.Repeat("0", 21)} {
		if _, _, err := s.Open(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Open(%q): %v", id, err)
		}
		if err := s.Delete(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Delete(%q): %v", id, err)
		}
		if err := s.Hold(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Hold(%q): %v", id, err)
		}
	}
}

func TestIDsSortAndAreUnique(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := newID()
		if !ValidID(id) || id <= prev || seen[id] {
			t.Fatalf("id %q after %q", id, prev)
		}
		seen[id] = true
		prev = id
	}
	ts, ok := IDTime(prev)
	if !ok || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
		t.Fatalf("IDTime = %v, %v", ts, ok)
	}
}

func TestConcurrentEnqueueAndWatch(t *testing.T) {
	for _, c := range []Config{{}, {DisableGroupCommit: true}, {DisableLog: true}, {DisableLog: true, DisableGroupCommit: true}, {SegmentSize: 2000}} {
		t.Run(fmt.Sprintf("group=%v,log=%v,seg=%d", !c.DisableGroupCommit, !c.DisableLog, c.SegmentSize), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, c)
			var mu sync.Mutex
			watched := map[string]bool{}
			s.Watch(func(id string) { mu.Lock(); watched[id] = true; mu.Unlock() })
			var wg sync.WaitGroup
			ids := make([]string, 200)
			for i := range ids {
				wg.Go(func() {
					id, err := s.Enqueue(context.Background(), testEnv(fmt.Sprintf("u%d@example.test", i)), strings.NewReader(fmt.Sprintf("message %d\r\n", i)))
					if err != nil {
						t.Error(err)
					}
					ids[i] = id
				})
			}
			wg.Wait()
			s.Close()
			if _, err := s.Enqueue(context.Background(), testEnv("x@example.test"), strings.NewReader("m")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Enqueue after Close: %v", err)
			}
			s = openT(t, dir, Config{})
			for i, id := range ids {
				if !watched[id] {
					t.Errorf("id %s not passed to the watcher", id)
				}
				env, b := readAll(t, s, id)
				if string(b) != fmt.Sprintf("message %d\r\n", i) || env.To[0] != fmt.Sprintf("u%d@example.test", i) {
					t.Fatalf("message %d: %q %v", i, b, env.To)
				}
			}
		})
	}
}

func FuzzReadEnvelope(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Config{DisableLog: true})
	if err != nil {
		f.Fatal(err)
	}
	id, err := s.Enqueue(context.Background(), testEnv("a@example.test"), strings.NewReader("hello\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	good, _ := os.ReadFile(filepath.Join(dir, "queue", id))
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("portcullis-spool v2 0000000000000030 00000002\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		env, size, err := readEnvelope(fh)
		if err == nil && (size < 0 || env.Size != size || int64(headerLen)+size > int64(len(b))) {
			t.Fatalf("accepted inconsistent file: size %d, env %+v", size, env)
		}
	})
}

func FuzzStatusRecords(f *testing.F) {
	line, _ := encodeRecord(Record{Op: OpRcpt, Rcpt: "a@b", State: Delivered, Reply: "250 ok"})
	f.Add(line)
	f.Add(append(line, line[:20]...))
	f.Add([]byte("00000000 {}\n\n\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, _ := parseRecords(bytes.NewReader(b))
		st := Status{Rcpts: map[string]RcptStatus{}}
		for _, r := range recs {
			st.apply(r)
		}
	})
}
