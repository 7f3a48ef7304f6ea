// Package greylist implements greylisting (Harris, 2003) with the semantics and defaults
// of postgrey 1.37, the greylisting policy server Postfix sites run: a delivery attempt is
// keyed by the triplet (client network, normalised sender, recipient); the first attempt
// of a triplet is refused with a temporary error, and a retry after the delay (300 s) is
// accepted, as long as it comes within the retry window (2 days) of the first attempt.
// A triplet that passed stays good until it has not been seen for max_age (35 days).
// A client that passed greylisting 5 times (counting at most one pass an hour) is
// allowed without greylisting (postgrey's auto-whitelist-clients).
//
// The client network is the /24 of an IPv4 address and the /64 of an IPv6 one; the sender
// loses its BATV tag (prvs=), its +extension, and runs of digits standing alone become
// "#" (postgrey's do_sender_substitutions), so VERP senders of one list share a triplet.
// Allow-lists by client network or name and by recipient (postgrey's whitelist files) and
// authenticated or trusted clients skip greylisting.
//
// State lives behind the small Store interface: in memory (NewMemoryStore), in SQLite in
// the data directory (OpenSQLite, the default of the server) or in Redis (NewRedisStore,
// Lua scripts for atomicity) when several front-ends must share it. When the store fails
// the policy fails open (accepts) or closed (tempfails) as configured, within a timeout.
//
// Policy exposes it to portcullis rules: greylist.greylisted, greylist.reply ("451 4.7.1
// ..."), greylist.delay_left, and an X-Greylist header on the first accepted retry.
package greylist
