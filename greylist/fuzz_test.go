package greylist

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzTripletKey: any sender and recipient (untrusted envelope input) make a key without
// panicking; the key is lower case and normalising twice changes nothing more for
// senders without BATV tags.
func FuzzTripletKey(f *testing.F) {
	for _, s := range []string{"a+b@x", "prvs=0123456789=user@b", "prvs=user=0123456789@b", "list-123-bounces+u=y@l", "", "@", "a@b@c", "12 34@x"} {
		f.Add(s, "U@Y.example")
	}
	f.Fuzz(func(t *testing.T, sender, rcpt string) {
		k := TripletKey(ClientNet(netip.MustParseAddr("192.0.2.1"), 24, 64), sender, rcpt)
		if k != strings.ToLower(k) {
			t.Fatalf("key %q not lower case", k)
		}
		n := NormalizeSender(sender)
		if !strings.Contains(sender, "prvs=") && NormalizeSender(n) != n {
			t.Fatalf("NormalizeSender not idempotent: %q -> %q -> %q", sender, n, NormalizeSender(n))
		}
	})
}
