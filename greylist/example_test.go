package greylist_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/portcullis-mail/portcullis/greylist"
	"github.com/portcullis-mail/portcullis/policy"
)

func Example() {
	p, err := greylist.New(greylist.Config{}, greylist.Deps{Store: greylist.NewMemoryStore()})
	if err != nil {
		panic(err)
	}
	client := &policy.Conn{IP: netip.MustParseAddr("192.0.2.7")}
	start := time.Unix(1_700_000_000, 0)
	for _, wait := range []time.Duration{0, time.Minute, 5 * time.Minute, time.Hour} {
		// A VERP sender: the digits are folded, so every bounce address is one triplet.
		d, _ := p.Check(context.Background(), client, fmt.Sprintf("list-%d@lists.example", wait), "u@example.org", start.Add(wait))
		fmt.Println(wait, d.Greylisted, d.DelayLeft, d.Passed)
	}
	// Output:
	// 0s true 300 false
	// 1m0s true 240 false
	// 5m0s false 0 true
	// 1h0m0s false 0 false
}
