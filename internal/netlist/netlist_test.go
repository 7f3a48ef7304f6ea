package netlist_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/netlist"
)

func TestPrefixes(t *testing.T) {
	ps, err := netlist.Prefixes([]string{"192.0.2.7", " 198.51.100.9/24", "::1", "::ffff:203.0.113.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"192.0.2.7": true, "192.0.2.8": false, "198.51.100.200": true, "::1": true,
		"::ffff:192.0.2.7": true, "203.0.113.5": true, "2001:db8::1": false,
	} {
		if got := netlist.Contains(ps, netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: %v, want %v", ip, got, want)
		}
	}
	for _, bad := range []string{"", "host.example", "192.0.2.0/33"} {
		if _, err := netlist.Prefixes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func ExamplePrefixes() {
	ps, _ := netlist.Prefixes([]string{"127.0.0.0/8", "::1"})
	fmt.Println(ps, netlist.Contains(ps, netip.MustParseAddr("127.0.0.2")))
	// Output: [127.0.0.0/8 ::1/128] true
}
