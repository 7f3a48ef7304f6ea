package content

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

func txFor(t *testing.T, file string) *policy.Transaction {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tx := policy.NewTransaction(policy.Conn{})
	tx.Message = policy.NewMessage(raw, time.Now())
	return tx
}

func TestPolicyResults(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file   string
		status policy.Status
		reason string
	}{
		{"testdata/worm-pif.eml", policy.StatusFail, "content.executable"},
		{"testdata/worm-zip.eml", policy.StatusFail, "content.executable"},
		{"testdata/unicode-names.eml", policy.StatusFail, "content.risky_extension"},
		{"testdata/html-urls.eml", policy.StatusPass, "content.clean"},
		{"testdata/broken-mime.eml", policy.StatusFail, "content.suspicious_name"},
	}
	decl := p.DeclareFacts()
	for _, c := range cases {
		r := p.CheckData(context.Background(), txFor(t, c.file))
		if r.Status != c.status || r.Reason != c.reason {
			t.Errorf("%s: got %s %s, want %s %s (%v)", c.file, r.Status, r.Reason, c.status, c.reason, r.Err)
		}
		for k, v := range r.Facts {
			d, ok := decl[k]
			if !ok {
				t.Errorf("fact %s is not declared", k)
				continue
			}
			if typeName(d) != typeName(v) {
				t.Errorf("fact %s: declared %T, reported %T", k, d, v)
			}
		}
		if len(r.Facts) != len(decl) {
			t.Errorf("%d facts reported, %d declared", len(r.Facts), len(decl))
		}
	}
	if r := p.CheckData(context.Background(), policy.NewTransaction(policy.Conn{})); r.Status != policy.StatusPermError || r.Err == nil {
		t.Errorf("no message: got %s", r.Status)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case int:
		return "int"
	case string:
		return "string"
	case []string:
		return "[]string"
	case []map[string]any:
		return "[]map"
	}
	return "other"
}

func TestPolicyTooLarge(t *testing.T) {
	p, _ := New(Config{Limits: Limits{MaxSize: 100}})
	r := p.CheckData(context.Background(), txFor(t, "testdata/worm-pif.eml"))
	if r.Status != policy.StatusPermError || r.Err == nil {
		t.Fatalf("got %s %v, want permerror", r.Status, r.Err)
	}
}

// TestParseShared checks that concurrent policies share one walk per message, and that
// the memo lets the message go.
func TestParseShared(t *testing.T) {
	raw, _ := os.ReadFile("testdata/worm-zip.eml")
	m := policy.NewMessage(raw, time.Now())
	var wg sync.WaitGroup
	got := make([]*Message, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = Parse(m)
		}()
	}
	wg.Wait()
	for _, g := range got[1:] {
		if g != got[0] || g == nil {
			t.Fatal("walks were not shared")
		}
	}
	if other, _ := ParseWith(m, Limits{MaxParts: 2}); other == got[0] {
		t.Fatal("different limits must not share a walk")
	}
	m = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		n := 0
		cache.Range(func(k, v any) bool { n++; return true })
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d memo entries left after the message was collected", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
