// Package ratelimit counts what SMTP clients do against rate limits with the names and
// zero-means-off semantics of Postfix's anvil(8) and smtpd(8): per client address (IPv6
// aggregated to a prefix, /64 by default) connections, messages, recipients, new TLS
// sessions and AUTH commands per time unit (anvil_rate_time_unit, 60s), and, as mox does,
// per authenticated user messages and first-time recipients per day (1000 and 200).
// Clients in the exceptions (smtpd_client_event_limit_exceptions; by default the trusted
// networks) are not counted.
//
// The SMTP server calls Limiter.Count at each event and answers Postfix's reply when the
// event is over its limit: "421 4.7.0 HOST Error: too many connections from IP" at
// connect, "450 4.7.1 Error: too much mail from IP" at MAIL, "450 4.7.1 Error: too many
// recipients from IP" at RCPT, ... The counts are also in the rule environment as
// client.rate.connections, client.rate.messages and friends.
//
// Counters are fixed windows that start at a key's first event, as anvil's. They live in
// memory (volatile, as anvil's) or in Redis when several front-ends share them; when
// Redis fails the limiter falls back to its local counters and logs it.
//
// Concurrent connections per client are the SMTP server's own limit
// (max_connections_per_ip, Postfix's smtpd_client_connection_count_limit), not counted
// here.
package ratelimit
