package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func logFiles(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "log", "*."+ext))
	return m
}

func TestLogSegmentsRecoveryAndGC(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentSize: 4096}
	s := openT(t, dir, cfg)
	ctx := context.Background()
	var ids []string
	for i := range 40 {
		id, err := s.Enqueue(ctx, testEnv("a@example.test"), strings.NewReader(fmt.Sprintf("message %d %s\r\n", i, strings.Repeat("x", 500))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if n := len(logFiles(t, dir, "seg")); n < 4 {
		t.Fatalf("%d segments for 40 half-KiB messages in 4 KiB segments", n)
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "queue")); len(des) != 0 {
		t.Fatalf("small messages went to queue/ files: %d", len(des))
	}
	// Remove the first half: their segments go away.
	for _, id := range ids[:20] {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	segsAfter := len(logFiles(t, dir, "seg"))
	s.Close()

	// A crash tears the last record of the last segment.
	segs := logFiles(t, dir, "seg")
	last := segs[len(segs)-1]
	f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(recMagic + ids[0] + " 00000010 0000000000000100 00000000\n{\"id\":")
	f.Close()

	// And a gc interrupted between its two steps leaves a dead list without its segment.
	os.WriteFile(filepath.Join(dir, "log", "0000000000000000.dead"), []byte("x\n"), 0o600)

	s = openT(t, dir, cfg)
	if _, err := os.Stat(filepath.Join(dir, "log", "0000000000000000.dead")); !os.IsNotExist(err) {
		t.Fatalf("orphan dead list not removed: %v", err)
	}
	got, _ := s.List()
	if strings.Join(got, ",") != strings.Join(ids[20:], ",") {
		t.Fatalf("after reopen List = %d ids, want the 20 not removed", len(got))
	}
	for i, id := range ids[20:] {
		_, b := readAll(t, s, id)
		if !strings.HasPrefix(string(b), fmt.Sprintf("message %d ", i+20)) {
			t.Fatalf("%s holds %q", id, b[:20])
		}
	}
	if n := len(logFiles(t, dir, "seg")); n > segsAfter+1 {
		t.Fatalf("%d segments after reopen, %d before (removed ones must not come back)", n, segsAfter)
	}
	for _, id := range ids[20:] {
		if err := s.SetRecipient(id, "a@example.test", Delivered, "250 ok"); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(logFiles(t, dir, "seg")); n != 1 {
		t.Fatalf("%d segments left after removing everything, want only the active one", n)
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "status")); len(des) != 0 {
		t.Fatalf("%d status files left", len(des))
	}
}

func TestLogMigrationOnDefer(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{})
	ctx := context.Background()
	id, err := s.Enqueue(ctx, testEnv("a@example.test", "b@example.test"), strings.NewReader("deferred one\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRecipient(id, "a@example.test", Delivered, "250 ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "queue", id)); !os.IsNotExist(err) {
		t.Fatal("message left the log before being deferred")
	}
	if err := s.Defer(id, time.Now().Add(time.Hour), "451 later"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "queue", id)); err != nil {
		t.Fatalf("deferred message not moved to queue/: %v", err)
	}
	if s.mlog.has(id) {
		t.Fatal("deferred message still in the log")
	}
	env, b := readAll(t, s, id)
	st, _ := s.Status(id)
	if string(b) != "deferred one\r\n" || env.ID != id || st.Rcpts["a@example.test"].State != Delivered || st.Attempts != 1 {
		t.Fatalf("after move: %q %+v %+v", b, env, st)
	}
	s.Close()

	// A crash between the copy and the log removal leaves both: recovery keeps the file.
	s = openT(t, dir, Config{})
	id2, _ := s.Enqueue(ctx, testEnv("a@example.test"), strings.NewReader("twice\r\n"))
	env2, m, _ := s.Open(id2)
	m.Close()
	tmp, _ := os.Create(filepath.Join(dir, "tmp", id2))
	if err := s.writeFile(ctx, tmp, &env2, id2, strings.NewReader("twice\r\n")); err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	os.Rename(filepath.Join(dir, "tmp", id2), filepath.Join(dir, "queue", id2))
	s.Close()
	s = openT(t, dir, Config{})
	ids, _ := s.List()
	if len(ids) != 2 || s.mlog.has(id2) {
		t.Fatalf("after recovery List = %v, in log %v", ids, s.mlog.has(id2))
	}
}

// ownerAndAdmin opens a spool in a new directory, queues one small message in its log
// and attaches a shared handle to it, as `portcullis queue` does beside the server.
func ownerAndAdmin(t *testing.T) (s, adm *Spool, id string) {
	t.Helper()
	dir := t.TempDir()
	s = openT(t, dir, Config{})
	id, err := s.Enqueue(context.Background(), testEnv("a@example.test"), strings.NewReader("m\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s, openT(t, dir, Config{Shared: true}), id
}

func TestSharedDeleteOfLogMessage(t *testing.T) {
	s, adm, id := ownerAndAdmin(t)
	if ids, _ := adm.List(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("shared List = %v", ids)
	}
	if _, b := readAll(t, adm, id); string(b) != "m\r\n" {
		t.Fatalf("shared Open = %q", b)
	}
	if err := adm.Delete(id); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(id)
	if err != nil || !st.Deleted {
		t.Fatalf("owner sees %+v %v, want Deleted", st, err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete: %v", err)
	}
}

// FuzzLogSegment feeds arbitrary bytes to log recovery: it must never panic, and every
// record it accepts must open.
func FuzzLogSegment(f *testing.F) {
	good := encodeLogRecord(newID(), []byte(`{"id":"x","to":["a@b"],"size":5}`), []byte("hello"))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good[:70]...))
	f.Add([]byte(recMagic + "00000000000000000000 ffffffff 7fffffffffffffff 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", 1)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := openLog(dir, 1<<20, true, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range l.ids() {
			_, m, ok, err := l.open(id)
			if ok && err == nil {
				m.Close()
			}
		}
	})
}

func TestParkHeldFromAnotherProcess(t *testing.T) {
	s, adm, id := ownerAndAdmin(t)
	if err := adm.Hold(id); err != nil {
		t.Fatal(err)
	}
	if !s.mlog.has(id) {
		t.Fatal("a shared handle moved a message out of the owner's log")
	}
	if err := s.Park(id); err != nil {
		t.Fatal(err)
	}
	if s.mlog.has(id) {
		t.Fatal("Park left the message in the log")
	}
	if st, _ := s.Status(id); !st.Held {
		t.Fatal("hold lost in the move")
	}
	if _, b := readAll(t, s, id); string(b) != "m\r\n" {
		t.Fatalf("after Park: %q", b)
	}
}

func TestInlineLimitBoundary(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Config{MaxInlineSize: 8192})
	for _, n := range []int{8191, 8192, 8193, 20000} {
		body := strings.Repeat("x", n)
		id, err := s.Enqueue(context.Background(), testEnv("a@example.test"), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, fileErr := os.Stat(filepath.Join(dir, "queue", id))
		if inLog := s.mlog.has(id); inLog != (n <= 8192) || inLog == (fileErr == nil) {
			t.Fatalf("%d bytes: in log %v, file %v", n, inLog, fileErr == nil)
		}
		if env, b := readAll(t, s, id); string(b) != body || env.Size != int64(n) {
			t.Fatalf("%d bytes: read back %d", n, len(b))
		}
	}
}

// A shared open (the queue commands beside a running server) that lists a segment the
// owner then deletes (gc: nothing live in it) skips it instead of failing; a dangling
// link stands for the segment gone between the listing and the open.
func TestSharedOpenSkipsASegmentCollectedMeanwhile(t *testing.T) {
	s, _, id := ownerAndAdmin(t)
	gone := filepath.Join(s.dir, "log", "00000000000000ff.seg")
	if err := os.Symlink(filepath.Join(s.dir, "log", "collected"), gone); err != nil {
		t.Fatal(err)
	}
	adm := openT(t, s.dir, Config{Shared: true})
	if ids, _ := adm.List(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("shared List = %v", ids)
	}
}
