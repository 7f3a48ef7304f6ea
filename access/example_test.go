package access_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/portcullis-mail/portcullis/access"
)

func Example() {
	dir, _ := os.MkdirTemp("", "access-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "client_access")
	// A Postfix check_client_access table, unchanged.
	os.WriteFile(path, []byte("# key value\n192.0.2      REJECT no mail from this network\nexample.net  OK\n"), 0o644)
	m, err := access.Open("texthash:"+path, access.MapOptions{})
	if err != nil {
		panic(err)
	}
	keys := access.Keys{ParentMatchesSubdomains: true}
	f, found, _ := m.Client(keys, "", netip.MustParseAddr("192.0.2.7"))
	fmt.Println(found, f.Key, f.Action.Name)
	fmt.Println(f.Reply)
	f, _, _ = m.Client(keys, "mx.example.net", netip.MustParseAddr("198.51.100.1"))
	fmt.Println(f.Key, f.Action.Name)
	// Output:
	// true 192.0.2 REJECT
	// 554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: no mail from this network
	// example.net OK
}
