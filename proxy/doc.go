// Package proxy is the IMAP and POP3 proxy of the multi-node mode: it accepts a client
// (STARTTLS or implicit TLS, passwords only over TLS), authenticates it through an
// Authenticator it owns (auth's service, so throttling and the credential cache
// apply), looks the user's mail host up in a Directory, connects to that back-end,
// sends a PROXY protocol v2 header naming the real client, logs the user in there with
// their own credentials, and relays the session both ways with an idle timeout and
// connection limits. Dovecot's proxy (passdb extra field "proxy" with "host") is the
// model. A back-end that cannot be reached gives the client a temporary failure —
// IMAP "NO [UNAVAILABLE]" (RFC 5530 §3), POP3 "-ERR [SYS/TEMP]" (RFC 3206 §4) — never
// another back-end.
package proxy
