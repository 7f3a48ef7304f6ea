package managesieve

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestGreetingAndTLS(t *testing.T) {
	r := startServer(t, Config{})
	c, greet := dial(t, r.addr)
	for _, want := range []string{`"IMPLEMENTATION" "portcullis"`, `"SASL" ""`, `"STARTTLS"`, `"VERSION" "1.0"`, `"MAXREDIRECTS" "4"`} {
		if !slices.Contains(greet, want) {
			t.Errorf("greeting %q lacks %s", greet, want)
		}
	}
	if !strings.HasPrefix(last(greet), "OK") {
		t.Fatalf("greeting ends with %q", last(greet))
	}
	// No password before TLS on a listener that is not trusted.
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "secret pw") + `"`)); !strings.HasPrefix(l, "NO (ENCRYPT-NEEDED)") {
		t.Fatalf("AUTHENTICATE before TLS: %s", l)
	}
	if l := last(c.cmd(`LISTSCRIPTS`)); !strings.HasPrefix(l, "NO") {
		t.Fatalf("LISTSCRIPTS before login: %s", l)
	}
	c.starttls()
	caps := c.cmd("CAPABILITY")
	if !slices.Contains(caps, `"SASL" "PLAIN"`) || slices.Contains(caps, `"STARTTLS"`) {
		t.Fatalf("capabilities after TLS: %q", caps)
	}
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" "` + plain("alice@example.org", "wrong") + `"`)); l != `NO "authentication failed"` {
		t.Fatalf("wrong password: %s", l)
	}
	// Without an initial response the server sends an empty challenge.
	if _, err := c.conn.Write([]byte("AUTHENTICATE \"PLAIN\"\r\n")); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.r.ReadString('\n'); l != "\"\"\r\n" {
		t.Fatalf("challenge %q", l)
	}
	resp := plain("alice@example.org", "secret pw")
	if l := last(c.cmd(fmt.Sprintf("{%d+}\r\n%s", len(resp), resp))); l != `OK` {
		t.Fatalf("login with a literal response: %s", l)
	}
	if l := last(c.cmd(`NOOP "t1"`)); l != `OK (TAG "t1") "Done"` {
		t.Fatalf("NOOP: %s", l)
	}
	if l := last(c.cmd(`UNAUTHENTICATE`)); !strings.HasPrefix(l, "OK") {
		t.Fatalf("UNAUTHENTICATE: %s", l)
	}
	if l := last(c.cmd(`LISTSCRIPTS`)); !strings.HasPrefix(l, "NO") {
		t.Fatalf("LISTSCRIPTS after UNAUTHENTICATE: %s", l)
	}
	// The TLS layer stays: a new login needs no STARTTLS.
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" "` + plain("bob@example.org", "pw2") + `"`)); l != `OK` {
		t.Fatalf("login after UNAUTHENTICATE: %s", l)
	}
	if caps := c.cmd("CAPABILITY"); !slices.Contains(caps, `"OWNER" "bob@example.org"`) {
		t.Fatalf("capabilities once logged in: %q", caps)
	}
	if l := last(c.cmd(`LOGOUT`)); !strings.HasPrefix(l, "OK") {
		t.Fatalf("LOGOUT: %s", l)
	}
}

func lit(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }

func TestScriptCommands(t *testing.T) {
	r := startServer(t, Config{MaxScripts: 2, MaxScriptSize: 200})
	c, _ := dial(t, r.addr)
	c.login("alice@example.org", "secret pw")

	good := "require \"fileinto\";\r\nif header :contains \"subject\" \"x\" { fileinto \"X\"; }\r\n"
	steps := []struct{ cmd, want string }{
		{`HAVESPACE "a" 100`, `OK`},
		{`HAVESPACE "a" 201`, `NO (QUOTA/MAXSIZE) "script too big"`},
		{`PUTSCRIPT "a" ` + lit("keep"), `NO "line 1:5: `},
		{`PUTSCRIPT "a" ` + lit(good), `OK`},
		{`PUTSCRIPT "b" ` + lit("keep;"), `OK`},
		{`PUTSCRIPT "c" ` + lit("keep;"), `NO (QUOTA/MAXSCRIPTS) "too many scripts"`},
		{`HAVESPACE "c" 1`, `NO (QUOTA/MAXSCRIPTS) "too many scripts"`},
		{`HAVESPACE "b" 1`, `OK`},
		{`PUTSCRIPT "b" ` + lit(strings.Repeat("#", 201)), `NO (QUOTA/MAXSIZE) "script too big: 201 octets, at most 200"`},
		{`CHECKSCRIPT ` + lit("require \"nope\"; keep;"), `NO "line 1:9: `},
		{`CHECKSCRIPT "discard;"`, `OK`},
		{`SETACTIVE "zz"`, `NO (NONEXISTENT) "there is no such script"`},
		{`SETACTIVE "a"`, `OK`},
		{`DELETESCRIPT "a"`, `NO (ACTIVE) "the script is active; deactivate it first"`},
		{`RENAMESCRIPT "a" "b"`, `NO (ALREADYEXISTS) "a script by that name exists"`},
		{`RENAMESCRIPT "x" "y"`, `NO (NONEXISTENT) "there is no such script"`},
		{`RENAMESCRIPT "a" "main"`, `OK`},
		{`GETSCRIPT "nope"`, `NO (NONEXISTENT) "there is no such script"`},
		{`DELETESCRIPT "b"`, `OK`},
		{"PUTSCRIPT \"bad\x01\" \"keep;\"", `NO "invalid script name"`},
		{`PUTSCRIPT "a"`, `NO "PUTSCRIPT: wrong number of arguments"`},
		{`HAVESPACE "a" "1"`, `NO "HAVESPACE: argument 2 must be a number"`},
		{`FROB`, `NO "unknown command FROB"`},
		{`CHECKSCRIPT ` + lit(`require "date"; if date :zone "+9999" "date" "year" "2026" { keep; }`), `OK (WARNINGS) "line 1:`},
	}
	for _, s := range steps {
		// The compiler's messages are compared by their start.
		if l := last(c.cmd(s.cmd)); !strings.HasPrefix(l, s.want) {
			t.Errorf("%.40q: got %s, want %s", s.cmd, l, s.want)
		}
	}
	list := c.cmd("LISTSCRIPTS")
	if !slices.Equal(list, []string{`"main" ACTIVE`, `OK`}) {
		t.Fatalf("LISTSCRIPTS = %q", list)
	}
	got := c.cmd(`GETSCRIPT "main"`)
	want := []string{fmt.Sprintf("{%d}", len(good))}
	want = append(want, strings.Split(strings.TrimSuffix(good, "\r\n"), "\r\n")...)
	want = append(want, "", `OK`)
	if !slices.Equal(got, want) {
		t.Fatalf("GETSCRIPT = %q, want %q", got, want)
	}
	// What the server stored is what delivery reads.
	u, err := r.st.Open(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	name, text, err := u.Scripts().Active(context.Background())
	if err != nil || name != "main" || string(text) != good {
		t.Fatalf("active in the store: %q %q %v", name, text, err)
	}
	if l := last(c.cmd(`SETACTIVE ""`)); !strings.HasPrefix(l, "OK") {
		t.Fatal(l)
	}
	if name, _, _ := u.Scripts().Active(context.Background()); name != "" {
		t.Fatalf("still active: %q", name)
	}
	// Another user sees none of alice's scripts.
	c2, _ := dial(t, r.addr)
	c2.login("bob@example.org", "pw2")
	if list := c2.cmd("LISTSCRIPTS"); len(list) != 1 {
		t.Fatalf("bob lists %q", list)
	}
}

func TestTrustedListener(t *testing.T) {
	r := startServer(t, Config{Trusted: true})
	c, greet := dial(t, r.addr)
	if !slices.Contains(greet, `"SASL" "PLAIN"`) {
		t.Fatalf("trusted greeting %q", greet)
	}
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" "` + plain("bob@example.org", "pw2") + `"`)); l != `OK` {
		t.Fatal(l)
	}
}

func TestLimits(t *testing.T) {
	r := startServer(t, Config{MaxScriptSize: 100, MaxErrors: 3})
	c, _ := dial(t, r.addr)
	c.login("alice@example.org", "secret pw")
	// A literal over 16 MiB (the most that is read and thrown away) ends the session.
	lines := c.cmd(`PUTSCRIPT "a" {99999999+}`)
	if !strings.HasPrefix(last(lines), "BYE") {
		t.Fatalf("huge literal: %q", lines)
	}
	c, _ = dial(t, r.addr)
	if l := last(c.cmd(`AUTHENTICATE "PLAIN" {9000+}`)); !strings.HasPrefix(l, "BYE") {
		t.Fatalf("big literal before login: %s", l)
	}
	c, _ = dial(t, r.addr)
	c.cmd("X")
	c.cmd("Y")
	if l := last(c.cmd("Z")); l != `NO "unknown command Z"` {
		t.Fatalf("third error: %s", l)
	}
	if l, _ := c.r.ReadString('\n'); !strings.HasPrefix(l, "BYE") {
		t.Fatalf("after MaxErrors: %q", l)
	}
}
