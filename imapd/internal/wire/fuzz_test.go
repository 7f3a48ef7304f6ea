package wire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReadCommand feeds arbitrary bytes to the parser as a client's stream: it must
// never panic or loop, every refusal is an *Error or an I/O error, and every command it
// accepts has a tag and a known name.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a LOGIN alice {3+}\r\npw!\r\n",
		"t UID FETCH 1:*,7 (UID BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BINARY[2]) (CHANGEDSINCE 5 VANISHED)\r\n",
		"x SEARCH RETURN (MIN) CHARSET UTF-8 OR (FROM \"a\" YOUNGER 60) NOT 1:5 MODSEQ 7\r\n",
		"x SELECT INBOX (QRESYNC (1 2 1:9 (1:3 4:6)))\r\n",
		"a APPEND INBOX (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello {3+}\r\nabc\r\n",
		"x LIST (SUBSCRIBED) \"\" (\"INBOX\" %) RETURN (STATUS (MESSAGES))\r\n",
		"x UID SORT (REVERSE DATE) UTF-8 ALL\r\nx THREAD REFERENCES UTF-8 ALL\r\n",
		"x ID (\"name\" NIL)\r\nx STORE 1 +FLAGS.SILENT \\Seen\r\n",
		"a LOGIN {999999999}\r\n", "a LOGIN {999999999+}\r\n", "a SEARCH ((((ALL))))\r\n",
		"a FETCH 1 BODY[]<4294967296.1>\r\n",
		"a APPEND INBOX (\\Seen) CATENATE (URL \"/INBOX/;uid=1/;section=1\" TEXT {5+}\r\nhello URL x) CATENATE (TEXT ~{2}\r\nab)\r\n",
		"a APPEND INBOX CATENATE (URL abort TEXT {3+}\r\nabc TEXT {4}\r\nabcd)\r\nb NOOP\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p := NewParser(bufio.NewReader(strings.NewReader(in)), Limits{MaxLine: 256, MaxStringLiteral: 64, MaxMessage: 128, MaxSkip: 64, MaxDepth: 8, MaxItems: 16},
			func(string) error { return nil })
		p.SetAuthenticated(len(in)%2 == 0)
		for range len(in) + 2 {
			c, err := p.ReadCommand()
			if err == nil && c.Append != nil {
				for {
					var m *AppendMessage
					if m, err = p.NextAppend(); err != nil || m == nil {
						break
					}
					if m.Catenate {
						if err = catenateParts(t, p); err != nil {
							break
						}
						continue
					}
					if n, _ := io.Copy(io.Discard, m.Body); n > 128 {
						t.Fatalf("message of %d octets beyond the limit", n)
					}
				}
			}
			var e *Error
			switch {
			case err == nil:
				if c.Tag == "" || commands[c.Name] == nil {
					t.Fatalf("accepted %+v", c)
				}
			case errors.As(err, &e):
				if e.Fatal {
					return
				}
			case errors.Is(err, ErrIO):
				return
			default:
				t.Fatalf("error of no kind: %v", err)
			}
		}
		t.Fatalf("no end after %d commands", len(in)+2)
	})
}

// catenateParts reads the parts of a CATENATE message; a URL "abort" aborts the APPEND as
// the session does for a bad URL.
func catenateParts(t *testing.T, p *Parser) error {
	var total int64
	for {
		part, err := p.NextCatenatePart()
		if err != nil || part == nil {
			return err
		}
		if part.URL == "abort" {
			return p.AbortAppend() // NextAppend then ends the APPEND
		}
		if part.Text != nil {
			n, _ := io.Copy(io.Discard, part.Text)
			if total += n; total > 128 {
				t.Fatalf("CATENATE text of %d octets beyond the limit", total)
			}
		}
	}
}
