package maildir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-mail/portcullis/store/maildir"
)

func Example() {
	tmp, _ := os.MkdirTemp("", "maildir")
	defer os.RemoveAll(tmp)
	d := maildir.Dir(filepath.Join(tmp, "Maildir"))
	if err := d.Create(); err != nil {
		panic(err)
	}
	key, _ := d.Deliver(strings.NewReader("Subject: hello\r\n\r\nhi\r\n"))
	e, _ := d.Find(key)
	e, _ = d.SetFlags(e, "SR") // seen and replied: renamed into cur
	fmt.Println(e.Sub, strings.TrimPrefix(e.File(), key))
	n, _ := maildir.ParseName("1700000000.M1P2Q3.mx,S=1234:2,FS")
	fmt.Println(n.Size, n.Flags.Has(maildir.FlagSeen))
	// Output:
	// cur :2,RS
	// 1234 true
}
