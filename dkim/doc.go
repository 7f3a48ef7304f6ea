// Package dkim authenticates mail with DKIM (RFC 6376) and DMARC (RFC 7489) and records
// the outcome in an Authentication-Results header (RFC 8601), on go-msgauth and the
// shared dnsx resolver.
//
//   - Verify checks every DKIM-Signature of a message (RSA and Ed25519, RFC 8463).
//   - LookupDMARC finds the DMARC record of the From: domain or of its organizational
//     domain (public suffix list); Evaluate applies identifier alignment (relaxed or
//     strict), p, sp and pct.
//   - AuthResults formats the Authentication-Results header; StripForgedAuthResults
//     removes incoming ones that claim to be ours (RFC 8601 §5).
//   - Signer signs outgoing mail with keys kept under the data directory, and
//     GenerateKey makes a key and the DNS TXT record to publish.
//
// Policy, in policy.go, exposes DKIM and DMARC to portcullis rules at the data stage.
package dkim
