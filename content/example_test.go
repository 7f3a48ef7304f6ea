package content_test

import (
	"fmt"
	"strings"

	"github.com/portcullis-mail/portcullis/content"
)

func Example() {
	msg := "From: a@example.org\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>Pay at <a href=\"https://pay.example.net/x\">our site</a></p>\r\n" +
		"--b\r\nContent-Type: application/pdf\r\n" +
		"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
	m, err := content.Walk(strings.NewReader(msg), content.Limits{})
	if err != nil {
		panic(err)
	}
	a := m.Attachments[0]
	fmt.Println(a.Name, a.Ext, a.Exts, a.DoubleExt, a.Risky)
	fmt.Println(m.URLHosts, strings.TrimSpace(m.Text))
	// Output:
	// invoice.pdf.exe exe [pdf exe] true true
	// [pay.example.net] Pay at our site
}
