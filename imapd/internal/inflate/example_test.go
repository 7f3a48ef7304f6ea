package inflate_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"

	"github.com/portcullis-mail/portcullis/imapd/internal/inflate"
)

func Example() {
	var stream bytes.Buffer
	w, _ := flate.NewWriter(&stream, flate.BestSpeed)
	w.Write([]byte("a1 NOOP\r\n"))
	w.Flush() // a client's flush: the server decodes the command without more input

	r := bufio.NewReader(inflate.NewReader(bufio.NewReader(&stream)))
	line, err := r.ReadString('\n')
	fmt.Printf("%q %v\n", line, err)
	// Output: "a1 NOOP\r\n" <nil>
}
