package headers

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// postmapTool returns a postmap command runner configured with an empty main.cf, or
// skips (fails in CI) when Postfix or its table type is not installed.
func postmapTool(t *testing.T, syn Syntax) func(file string, keys []string) map[string]string {
	t.Helper()
	pm := testenv.Program(t, "postmap")
	dir := t.TempDir()
	writeMainCF(t, dir, "")
	pc := filepath.Join(filepath.Dir(pm), "postconf")
	out, err := exec.Command(pc, "-c", dir, "-m").Output()
	if err != nil || !bytes.Contains(out, []byte(syn.String()+"\n")) {
		testenv.Unavailable(t, "postfix has no %s table support (Debian package postfix-pcre)", syn)
	}
	return func(file string, keys []string) map[string]string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, pm, "-c", dir, "-q", "-", syn.String()+":"+file)
		cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 { // 1: nothing found
				t.Fatalf("postmap %s: %v: %s", file, err, stderr.String())
			}
		}
		if stderr.Len() > 0 {
			t.Errorf("postmap %s warned: %s", file, stderr.String())
		}
		res := map[string]string{}
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if k, v, ok := strings.Cut(l, "\t"); ok {
				res[k] = v
			}
		}
		return res
	}
}

// compareWithPostfix looks every key up in our map and with postmap, and requires the
// same result (or the same absence of one).
func compareWithPostfix(t *testing.T, file string, syn Syntax, keys []string) {
	t.Helper()
	query := postmapTool(t, syn)
	m, err := LoadMapTimeout(syn.String()+":"+file, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := query(file, keys)
	hits := 0
	for _, k := range keys {
		h, ok, err := m.Lookup(k)
		if err != nil {
			t.Errorf("%q: %v", k, err)
		}
		got := ""
		if ok {
			got = h.Result
			hits++
		}
		if w, found := want[k]; found != ok || got != w {
			t.Errorf("%s %q: we say %q (hit %v, %s), postfix says %q (hit %v)", filepath.Base(file), k, got, ok, h.Pattern, w, found)
		}
	}
	if hits == 0 {
		t.Errorf("%s: no key matched; the comparison proves nothing", file)
	}
}

var compatKeys = []string{
	"Subject: abcfoo", "Subject: nothing", "X-A: b", "X-A: c", "X-B: zz", "X-B: no", "X-C: y",
	"X-D: MIXED", "X-Case: exact", "X-Case: Exact", "Look: lookbehind", "Look: behind",
	"Back: abc abc", "Back: abc abd", "Lazy: aaaa", "Ungreedy: aaaa", "Multi: a", "Dot: a-b", "Dot2: a-b",
	"Ext: abc", "Ext: a b c", "Comment: x", "Pipe: a/b", "Slash: a/b", "Opt: y", "Opt: xy",
	"Alt: category", "Alt: cat", "Num: 12345", "Num: 12", "Rtl: invoice\u202Efdp.exe", "Rtl: plain",
	"Anch: b", "Received: from x", "Other: y", "Unicode: ü", "Unicode: abc",
	// Not compared: "Unicode: äöü". Postfix's PCRE (non-UTF mode) counts bytes, so .{3}
	// does not match three two-byte letters; we count characters (TestDotMatchesCharacters).
}

func TestPostfixCompatPCRE(t *testing.T) {
	compareWithPostfix(t, "testdata/compat.pcre", PCRE, compatKeys)
}

func TestPostfixCompatRegexp(t *testing.T) {
	compareWithPostfix(t, "testdata/compat.regexp", Regexp, []string{
		"Subject: abcfoo", "X-Alt: category", "X-Alt: cat", "X-Class: 123  abc", "X-Class: abc",
		"X-Case: exact", "X-Case: Exact", "X-Bre: abab", "X-Bre: ab", "X-Word: word here",
		"X-Word: swordfish", "X-Other: v", "X-Skip: s", "Other: x",
		"X-Br: a\\b", "X-Br: a.b", "X-Br: axb", "X-Cl: a1b", "X-Cl: a\\b", "X-Cl: axb",
	})
}

// shippedKeys are lines the shipped example maps should (or should not) catch.
var shippedKeys = []string{
	"Subject: your details", "Subject: Your Details ", "Subject: buy VIAGRA now", "Subject: viagrafication",
	"Subject: =?big5?B?xxx?=", "Subject: hello                                      tail", "Subject: hello",
	"X-Mailer: Advanced Mass Sender v 3.21b", "X-Mailer: Microsoft Outlook Express 6.00.2600.0000",
	"X-Mailer: Mutt", "User-Agent: curl/8.0", "X-Portcullis-Score: 3",
	"Received: from dsl-1-2-3-4.example.net (dsl-1-2-3-4.example.net [192.0.2.1])",
	"Received: from mail.example.org",
	`Content-Type: application/octet-stream; name="document.pif"`,
	`Content-Disposition: attachment; filename="photo.jpg.scr"`,
	`Content-Disposition: attachment; filename=readme.exe`,
	`Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe`,
	`Content-Disposition: attachment; filename="invoice.pdf.exe"`,
	`Content-Disposition: attachment; filename="report.pdf"`,
	`Content-Type: application/x-msdownload`, `Content-Type: message/partial; id="x"`,
	`Content-Type: text/plain; charset=us-ascii`, `Content-Type: application/hta`,
	"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA4fug4A",
	"begin 644 setup.exe", "begin 644 notes.txt", `<iframe src="http://192.0.2.7/x.html">`,
	`<font color="#ffffff">hidden</font>`, "plain body text",
}

func TestShippedMapsMatchPostfix(t *testing.T) {
	for _, f := range []string{"maps/header_checks.pcre", "maps/mime_header_checks.pcre", "maps/body_checks.pcre"} {
		t.Run(filepath.Base(f), func(t *testing.T) { compareWithPostfix(t, f, PCRE, shippedKeys) })
	}
	t.Run("header_checks.regexp", func(t *testing.T) {
		compareWithPostfix(t, "maps/header_checks.regexp", Regexp, shippedKeys)
	})
}

// TestPostfixFoldedHeaders compares lookups of multi-line logical headers (which
// postmap takes as a command-line key) on the shipped MIME map.
func TestPostfixFoldedHeaders(t *testing.T) {
	postmapTool(t, PCRE) // skips or fails when postmap is missing
	keys := []string{
		"Dot: a\nb", "Dot2: a\nb", "Multi: a\nb", "Subject: one\n two",
		"Content-Disposition: attachment;\n filename*0*=utf-8''Rechnung%20;\n filename*1=\"2026\";\n filename*2*=%E2%80%AEfdp.exe",
		"Content-Type: application/octet-stream;\n\tname=\"photo.jpg.scr\"",
		"Content-Type: text/plain;\n\tcharset=us-ascii",
		"Content-Disposition: attachment;\n\tfilename=\"report.pdf\"",
	}
	for _, file := range []string{"maps/mime_header_checks.pcre", "testdata/compat.pcre"} {
		compareArgv(t, file, keys)
	}
}

func compareArgv(t *testing.T, file string, keys []string) {
	m, err := LoadMap(file)
	if err != nil {
		t.Fatal(err)
	}
	pm := testenv.Program(t, "postmap")
	dir := t.TempDir()
	writeMainCF(t, dir, "")
	hits := 0
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, pm, "-c", dir, "-q", k, "pcre:"+file).Output()
		cancel()
		want, found := strings.TrimRight(string(out), "\n"), err == nil
		h, ok, _ := m.Lookup(k)
		if ok != found || (ok && h.Result != want) {
			t.Errorf("%q: we say %q (%v), postfix says %q (%v)", k, h.Result, ok, want, found)
		}
		if ok {
			hits++
		}
	}
	if hits < 2 {
		t.Errorf("%s: only %d folded keys matched", file, hits)
	}
}

// writeMainCF writes a main.cf dated an hour back: Postfix programs wait about two
// seconds for a configuration file modified within the last second to settle.
func writeMainCF(t *testing.T, dir, text string) {
	t.Helper()
	f := filepath.Join(dir, "main.cf")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(f, old, old); err != nil {
		t.Fatal(err)
	}
}
