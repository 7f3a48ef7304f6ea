package relay_test

import (
	"fmt"

	"github.com/portcullis-mail/portcullis/delivery/relay"
)

func ExampleParseNextHop() {
	for _, hop := range []string{"example.org", "[smtp.isp.example]:587", "smtp:[192.0.2.7]"} {
		host, port, mx, _ := relay.ParseNextHop(hop)
		fmt.Println(host, port, mx)
	}
	// Output:
	// example.org 0 true
	// smtp.isp.example 587 false
	// 192.0.2.7 0 false
}
