package headers_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/content"
	"github.com/portcullis-mail/portcullis/headers"
)

func Example() {
	table := `# a Postfix header_checks table, unchanged
/^Subject:.*\b(viagra|cialis)\b/   REJECT 5.7.1 no $1 here
/^Content-(Type|Disposition):.*name="?[^"]*\.(exe|pif|scr)"?/   REJECT .$2 files are not accepted
`
	m, err := headers.ParseMap("header_checks", strings.NewReader(table), headers.PCRE, time.Second)
	if err != nil {
		panic(err)
	}
	msg, _ := content.WalkBytes([]byte("Subject: hello\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"+
		"Content-Type: application/octet-stream;\r\n\tname=\"document.pif\"\r\n\r\nxx\r\n--b--\r\n"), content.Limits{})
	// As in Postfix, mime_header_checks defaults to the header_checks table.
	rep := (&headers.Tables{Header: m, MIME: m}).Check(msg)
	d := rep.Decisive
	fmt.Println(d.Table, d.Hit.Where())
	fmt.Println(d.Reply())
	// Output:
	// mime_header_checks header_checks:3
	// 550 5.7.1 .pif files are not accepted
}
