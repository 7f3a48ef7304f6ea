package migrate

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// cannedConn is a server whose answers are all in r; what the client writes is dropped.
type cannedConn struct {
	net.Conn
	r *strings.Reader
}

func (c cannedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c cannedConn) Write(p []byte) (int, error) { return len(p), nil }

// parseListAndGet runs the client's LISTSCRIPTS and GETSCRIPT parsing over a canned
// server stream.
func parseListAndGet(t testing.TB, stream string) ([]Script, error) {
	t.Helper()
	conn := cannedConn{r: strings.NewReader(stream)}
	c := &SieveClient{addr: "test", raw: conn, ms: newMSConn(conn), stop: func() bool { return true }}
	return c.Scripts()
}

// TestSieveResponses: a script named "OK" and a script whose text is "NO" are strings,
// not the end of the response (a client that took them for it read the rest of the
// listing as the next command's answer); response codes with arguments are skipped;
// NO (NONEXISTENT) matches ErrNoSieveScript.
func TestSieveResponses(t *testing.T) {
	stream := "\"OK\" ACTIVE\r\n\"vacation\"\r\nOK (TAG \"x y\") \"listed\"\r\n" +
		"{2}\r\nNO\r\nOK\r\n" +
		"{19}\r\nrequire \"vacation\";\r\nOK\r\n"
	got, err := parseListAndGet(t, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "OK" || !got[0].Active || string(got[0].Text) != "NO" ||
		got[1].Name != "vacation" || got[1].Active || string(got[1].Text) != `require "vacation";` {
		t.Fatalf("scripts %+v", got)
	}
	_, err = parseListAndGet(t, "\"gone\"\r\nOK\r\nNO (NONEXISTENT) \"There is no script by that name\"\r\n")
	if !errors.Is(err, ErrNoSieveScript) || !strings.Contains(err.Error(), "There is no script") {
		t.Fatalf("GETSCRIPT of a missing script: %v", err)
	}
	if _, err := parseListAndGet(t, "{99999999999}\r\n"); err == nil {
		t.Fatal("a huge literal was accepted")
	}
}

// FuzzSieveResponse: any server stream ends in scripts or an error, never a panic or a
// hang; a listing of one script whose name and text are any bytes reads back exactly.
func FuzzSieveResponse(f *testing.F) {
	f.Add("OK", []byte("NO"), false)
	f.Add("vacation", []byte("require \"vacation\";\r\nvacation \"away\";\r\n"), true)
	f.Add("a\"b\\c", []byte("{3}\r\nOK\r\n"), true)
	f.Fuzz(func(t *testing.T, name string, text []byte, active bool) {
		// Any bytes as a stream.
		parseListAndGet(t, name+"\r\n"+string(text))
		if strings.ContainsAny(name, "\r\n\x00") || len(name) > 1024 || len(text) > maxScriptSize {
			return
		}
		line := sieveString(name)
		if active {
			line += " ACTIVE"
		}
		stream := line + "\r\nOK\r\n{" + strconv.Itoa(len(text)) + "}\r\n" + string(text) + "\r\nOK\r\n"
		got, err := parseListAndGet(t, stream)
		if err != nil {
			t.Fatalf("%q: %v", stream, err)
		}
		if len(got) != 1 || got[0].Name != name || string(got[0].Text) != string(text) || got[0].Active != active {
			t.Fatalf("%q: got %+v", stream, got)
		}
	})
}

// TestSieveResponseUnendedLiteral: a literal's length without its "}", or without the
// end of its line, is an error after a few bytes; the client does not read on (into
// memory, without end) for the delimiter.
func TestSieveResponseUnendedLiteral(t *testing.T) {
	for _, stream := range []string{"{" + strings.Repeat("1", 1<<20), "{5}" + strings.Repeat(" ", 1<<20)} {
		r := strings.NewReader(stream)
		conn := cannedConn{r: r}
		c := &SieveClient{addr: "test", raw: conn, ms: newMSConn(conn), stop: func() bool { return true }}
		if _, err := c.Scripts(); err == nil {
			t.Fatalf("%.10q...: no error", stream)
		}
		if read := len(stream) - r.Len(); read > 64<<10 {
			t.Errorf("%.10q...: read %d bytes looking for the literal's end", stream, read)
		}
	}
}
