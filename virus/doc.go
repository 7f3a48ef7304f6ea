// Package virus is a client for clamd, the ClamAV daemon, and the policy that puts its
// verdicts into portcullis rules.
//
// A Client streams a message to one of several daemons with INSTREAM (over TCP or a unix
// socket), chunk by chunk from an io.Reader, so the message is never held twice in memory.
// It reuses connections through IDSESSION, bounds connect, every chunk write and the reply
// with deadlines, fails over to the next daemon when one fails, and takes a daemon that
// keeps failing out of rotation for a cooldown (a circuit breaker, closed again by a PING).
// When no daemon can scan, Scan returns ErrUnavailable: callers must fail closed.
//
// The protocol is clamd(8)'s: commands with the "z" prefix end with NUL, and so do the
// replies. Signature names are whatever the daemon reports (a local database appends
// ".UNOFFICIAL"); nothing here depends on particular names.
package virus
