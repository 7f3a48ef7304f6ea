package imapd

import (
	"strings"
	"testing"
)

// Subscriptions are the user's list of names, not a property of folders (issue 16 item
// 6): CREATE does not subscribe, DELETE keeps the subscription, so LIST (SUBSCRIBED)
// shows the deleted folder as \NonExistent (RFC 5258 §3.1, RFC 9051 §6.3.7), and LSUB
// returns an unsubscribed parent of a subscribed folder that % hides as \Noselect (RFC
// 3501 §6.3.9).
func TestSubscriptionsOutliveFolders(t *testing.T) {
	e := start(t, Config{Trusted: true})
	r := dialRaw(t, e.addr)
	r.ok(`LOGIN alice@example.org "secret pw"`)
	for _, m := range []string{"s", "s/a", "s/b/c", "s/d", "s/e/f"} {
		r.ok("CREATE %s", m)
	}
	if lines := r.ok(`LSUB "" s*`); len(lines) != 0 {
		t.Fatalf("CREATE subscribed: LSUB gives %q", lines)
	}
	if lines := r.ok(`LSUB "" INBOX`); len(lines) != 1 {
		t.Errorf("INBOX is not subscribed by default: %q", lines)
	}
	r.ok("SUBSCRIBE s/a")
	r.ok("SUBSCRIBE s/b/c")
	r.ok("SUBSCRIBE s/d")
	r.ok("DELETE s/d")

	lines := r.ok(`LSUB "" s/%%`)
	want := []string{`* LSUB (\HasNoChildren \Subscribed) "/" "s/a"`, `* LSUB (\HasChildren \Noselect) "/" "s/b"`, `* LSUB (\NonExistent \Subscribed) "/" "s/d"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("LSUB \"\" s/%%:\n got %q\nwant %q", lines, want)
	}

	lines = r.ok(`LIST (SUBSCRIBED) "" s/*`)
	want = []string{`* LIST (\HasNoChildren \Subscribed) "/" "s/a"`, `* LIST (\HasNoChildren \Subscribed) "/" "s/b/c"`, `* LIST (\NonExistent \Subscribed) "/" "s/d"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("LIST (SUBSCRIBED):\n got %q\nwant %q", lines, want)
	}

	// RECURSIVEMATCH: s/b has a subscribed child that the pattern does not match; s/e
	// has none; a descendant that the pattern matches is listed itself, not as CHILDINFO.
	lines = r.ok(`LIST (SUBSCRIBED RECURSIVEMATCH) "" s/%% RETURN (CHILDREN)`)
	want = []string{`* LIST (\HasNoChildren \Subscribed) "/" "s/a"`, `* LIST (\HasChildren) "/" "s/b" (CHILDINFO ("SUBSCRIBED"))`, `* LIST (\NonExistent \Subscribed) "/" "s/d"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH):\n got %q\nwant %q", lines, want)
	}
	lines = r.ok(`LIST (SUBSCRIBED RECURSIVEMATCH) "" (s/b s/b/c)`)
	want = []string{`* LIST (\HasNoChildren \Subscribed) "/" "s/b/c"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH) with the child matched:\n got %q\nwant %q", lines, want)
	}

	// A plain LIST shows only folders that exist; RETURN (SUBSCRIBED) marks them.
	lines = r.ok(`LIST "" s/%% RETURN (SUBSCRIBED)`)
	got := strings.Join(lines, "\n")
	if strings.Contains(got, "s/d") || !strings.Contains(got, `(\HasNoChildren \Subscribed) "/" "s/a"`) || !strings.Contains(got, `(\HasChildren) "/" "s/e"`) {
		t.Errorf("LIST RETURN (SUBSCRIBED): %q", lines)
	}

	// Re-creating the deleted folder finds it subscribed; UNSUBSCRIBE of a name without
	// a folder removes it; RENAME takes the subscription along.
	r.ok("CREATE s/d")
	if lines := r.ok(`LSUB "" s/d`); len(lines) != 1 || lines[0] != `* LSUB (\HasNoChildren \Subscribed) "/" "s/d"` {
		t.Errorf("re-created s/d: %q", lines)
	}
	r.ok("DELETE s/d")
	r.ok("UNSUBSCRIBE s/d")
	r.ok("RENAME s/a s/z")
	lines = r.ok(`LIST (SUBSCRIBED) "" s/*`)
	want = []string{`* LIST (\HasNoChildren \Subscribed) "/" "s/b/c"`, `* LIST (\HasNoChildren \Subscribed) "/" "s/z"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("after UNSUBSCRIBE and RENAME:\n got %q\nwant %q", lines, want)
	}
}
