// Package rbl queries DNS blocklists and allowlists: DNSBLs on the client's IPv4 or IPv6
// address (RFC 5782 §2.1, §2.4), RHSBLs on domain names (the client's host name, the HELO
// name, the envelope sender's domain, the From: header's domain, the domains of URLs in the
// body), and DNSWLs, whose listings count against the score.
//
// The core API works without the policy engine:
//
//	c := rbl.NewClient(resolver)
//	l, err := c.Lookup(ctx, "zen.spamhaus.org", ip)   // l.Codes: 127.0.0.2, ...
//	l, err = c.LookupDomain(ctx, "dbl.spamhaus.org", "example.com")
//
// Lists are configured as in Postfix's postscreen_dnsbl_sites, with return-code filters and
// weights (see Site). A return code outside 127.0.0.0/8, or one a list uses to say that it
// refused the query (Spamhaus's 127.255.255.x, for one), is an error, never a listing.
//
// The policy adapters (New for DNSBL and DNSWL on the client address, NewRHSBL for domain
// lists) query all lists of an instance concurrently, bounded by one deadline and a cap on
// the number of queries per check.
package rbl
