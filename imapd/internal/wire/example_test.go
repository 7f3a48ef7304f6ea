package wire_test

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
)

func Example() {
	conn := strings.NewReader("a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER]<0.512>)\r\na2 LOGIN {999999999}\r\na3 NOOP\r\n")
	p := wire.NewParser(bufio.NewReader(conn), wire.Limits{}, func(text string) error {
		fmt.Println("+", text) // a real server writes and flushes it
		return nil
	})
	for {
		cmd, err := p.ReadCommand()
		if e, ok := err.(*wire.Error); ok {
			fmt.Println(cmd.Tag, e)
			continue
		}
		if err != nil {
			break
		}
		fmt.Println(cmd.Tag, cmd.Name, cmd.UID)
		if cmd.Fetch != nil {
			a := cmd.Fetch.Atts[1]
			fmt.Println(a.Name, a.Section.Specifier, *a.Partial)
		}
	}
	// Output:
	// a1 FETCH true
	// BODY.PEEK[] HEADER {0 512}
	// a2 BAD [TOOBIG] literal of 999999999 octets too big (at most 65536)
	// a3 NOOP false
}
