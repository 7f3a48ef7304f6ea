package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/groupsync"
)

func TestDeliverScanFlags(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "Maildir"))
	if d.Exists() {
		t.Fatal("Exists before Create")
	}
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	if !d.Exists() {
		t.Fatal("not Exists after Create")
	}
	fi, err := os.Stat(string(d) + "/cur")
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cur mode: %v %v", fi.Mode(), err)
	}
	msg := "Subject: hi\r\n\r\nbody\r\n"
	key, err := d.Deliver(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(key, fmt.Sprintf(",S=%d", len(msg))) {
		t.Fatalf("key %q lacks size", key)
	}
	if tmp, _ := os.ReadDir(string(d) + "/tmp"); len(tmp) != 0 {
		t.Fatalf("tmp not empty: %v", tmp)
	}
	es, err := d.Scan()
	if err != nil || len(es) != 1 || es[0].Sub != New || es[0].Name.Key != key || es[0].Name.Size != int64(len(msg)) {
		t.Fatalf("scan: %+v %v", es, err)
	}
	e, err := d.SetFlags(es[0], "SF")
	if err != nil {
		t.Fatal(err)
	}
	if e.Sub != Cur || e.File() != key+":2,FS" {
		t.Fatalf("after SetFlags: %+v %s", e, e.File())
	}
	found, err := d.Find(key)
	if err != nil || found.File() != key+":2,FS" {
		t.Fatalf("find: %+v %v", found, err)
	}
	f, err := d.Open(found)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != msg {
		t.Fatalf("content %q", b)
	}
	e2, err := d.SetFlags(found, "T")
	if err != nil || e2.File() != key+":2,T" {
		t.Fatalf("%+v %v", e2, err)
	}
	if err := d.Remove(e2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Find(key); err == nil {
		t.Fatal("found after remove")
	}
	// Delivery straight into cur with flags.
	k2, err := d.DeliverTo(bytes.NewReader([]byte("x")), Cur, "SD", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path(Cur, k2+":2,DS")); err != nil {
		t.Fatal(err)
	}
	// A modification time is on the file as it appears (readers date it by its mtime).
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	k3, err := d.DeliverTo(strings.NewReader("y"), New, "", when)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.Path(New, k3)); err != nil || !fi.ModTime().Equal(when) {
		t.Fatalf("mtime of a delivery at %v: %v %v", when, fi, err)
	}
	if _, err := d.DeliverTo(strings.NewReader("x"), New, "S", time.Time{}); err == nil {
		t.Fatal("flags into new accepted")
	}
	if _, err := d.DeliverTo(strings.NewReader("x"), "../x", "", time.Time{}); err == nil {
		t.Fatal("bad sub accepted")
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestDeliverFailureLeavesNothing(t *testing.T) {
	d := Dir(t.TempDir())
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deliver(failReader{}); err == nil {
		t.Fatal("no error")
	}
	for _, sub := range []string{Tmp, New, Cur} {
		if des, _ := os.ReadDir(filepath.Join(string(d), sub)); len(des) != 0 {
			t.Fatalf("%s not empty", sub)
		}
	}
}

func TestUniqueConcurrent(t *testing.T) {
	d := Dir(t.TempDir())
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				k, err := d.Deliver(strings.NewReader("m"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[k] {
					t.Errorf("duplicate key %s", k)
				}
				seen[k] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	es, err := d.Scan()
	if err != nil || len(es) != 200 {
		t.Fatalf("scan %d %v", len(es), err)
	}
}

func TestScanSkipsJunk(t *testing.T) {
	d := Dir(t.TempDir())
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{".hidden", "bad:2,S1"} {
		os.WriteFile(d.Path(Cur, n), nil, 0o600)
	}
	os.Mkdir(d.Path(New, "subdir"), 0o700)
	es, err := d.Scan()
	if err != nil || len(es) != 0 {
		t.Fatalf("%+v %v", es, err)
	}
}

func TestCleanTmp(t *testing.T) {
	d := Dir(t.TempDir())
	d.Create()
	old := d.Path(Tmp, "old")
	os.WriteFile(old, nil, 0o600)
	os.Chtimes(old, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour))
	os.WriteFile(d.Path(Tmp, "fresh"), nil, 0o600)
	// A delivery in progress dated in the past (an APPEND of an old message) is young by
	// its name.
	dated := d.Path(Tmp, NewKey())
	os.WriteFile(dated, nil, 0o600)
	os.Chtimes(dated, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour))
	n, err := d.CleanTmp(36 * time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := os.Stat(dated); err != nil {
		t.Fatalf("a delivery in progress was cleaned: %v", err)
	}
}

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ok    bool
		key   string
		flags Flags
		size  int64
		out   string
	}{
		{"1.M2P3Q4.host,S=42:2,SRF", true, "1.M2P3Q4.host,S=42", "FRS", 42, "1.M2P3Q4.host,S=42:2,FRS"},
		{"1.M2P3.host", true, "1.M2P3.host", "", -1, "1.M2P3.host"},
		{"1.host,S=10,W=12:2,", true, "1.host,S=10,W=12", "", 10, "1.host,S=10,W=12:2,"},
		{"k:2,SSa", true, "k", "Sa", -1, "k:2,Sa"},
		{"k:1,experimental", true, "k", "", -1, "k:1,experimental"},
		{"", false, "", "", 0, ""},
		{".", false, "", "", 0, ""},
		{"..", false, "", "", 0, ""},
		{".dotfile", false, "", "", 0, ""},
		{"a/b", false, "", "", 0, ""},
		{"a\x00b", false, "", "", 0, ""},
		{"k:2,S!", false, "", "", 0, ""},
		{":2,S", false, "", "", 0, ""},
		{strings.Repeat("x", 300), false, "", "", 0, ""},
	} {
		n, err := ParseName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseName(%q) err=%v", tc.in, err)
			continue
		}
		if !tc.ok {
			continue
		}
		if n.Key != tc.key || n.Flags != tc.flags || n.Size != tc.size || n.String() != tc.out {
			t.Errorf("ParseName(%q) = %+v (%q)", tc.in, n, n.String())
		}
	}
	if got := FormatName("k", "TDSS"); got != "k:2,DST" {
		t.Errorf("FormatName = %q", got)
	}
	f := Flags("S").With('F').With('S')
	if f != "FS" || !f.Has('F') || f.Without('F') != "S" {
		t.Errorf("flags ops: %q", f)
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"1.M2P3Q4.host,S=42:2,SRF", "k", "k:2,", "k:1,x", ".x", "a/b", "k:2,S!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(n.Key, "/:") || n.Key == "" || n.Key[0] == '.' {
			t.Fatalf("accepted unsafe key %q", n.Key)
		}
		n2, err := ParseName(n.String())
		if err != nil {
			t.Fatalf("reparse %q: %v", n.String(), err)
		}
		if n2 != n {
			t.Fatalf("round trip %+v != %+v", n2, n)
		}
	})
}

func TestKeyLess(t *testing.T) {
	keys := []string{"1700000000.M99999P1Q9.h", "1700000000.M100000P1Q10.h", "1700000001.M5P1Q11.h", "1700000001.M5P1Q2.h", "zzz", "1699999999.x"}
	want := []string{"1699999999.x", "1700000000.M99999P1Q9.h", "1700000000.M100000P1Q10.h", "1700000001.M5P1Q2.h", "1700000001.M5P1Q11.h", "zzz"}
	sort.Slice(keys, func(i, j int) bool { return KeyLess(keys[i], keys[j]) })
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("%v", keys)
	}
}

// TestConcurrentDeliveriesShareDirSyncs: concurrent deliveries into one maildir all land
// and all wait for a directory fsync that started after their own link.
func TestConcurrentDeliveriesShareDirSyncs(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "Maildir"))
	if err := d.Create(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Deliver(strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 40 {
		t.Fatalf("%d messages in the maildir, want 40", len(entries))
	}
	g, _ := dirSyncs.Load(filepath.Join(string(d), New))
	if n := g.(*groupsync.Syncer).Calls(); n == 0 || n > 40 {
		t.Fatalf("%d directory fsyncs for 40 deliveries", n)
	}
}

func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("a"), 0o600)
	os.WriteFile(b, []byte("b"), 0o600)
	err := renameNoReplace(a, b)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no renameat2 on this system")
	}
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("rename onto an existing file: %v", err)
	}
	if got, _ := os.ReadFile(b); string(got) != "b" {
		t.Fatalf("existing file overwritten: %q", got)
	}
	c := filepath.Join(dir, "c")
	if err := renameNoReplace(a, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source still there: %v", err)
	}
}
