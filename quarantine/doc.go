// Package quarantine keeps the messages the rules quarantined and lets their recipients
// decide about them: release (delivered as accepted mail), delete, and per-user lists of
// senders always allowed or always blocked.
//
// A quarantined message stays in the spool, held (delivery.Manager holds every message
// whose envelope says Quarantine): it is never delivered, survives restarts with the rest
// of the queue and is listed by "portcullis queue". The quarantine is per recipient: when
// one of several recipients releases, a copy addressed to that recipient alone is queued
// as accepted mail (not quarantined, so never held again) and that recipient is marked
// delivered in the held message; a deletion marks the recipient done without a bounce.
// The held message goes when no recipient is left, or when it is older than the lifetime
// (Area.Prune).
//
// The released copy goes to the queue directly, not back through the SMTP server and its
// rules, so it is not scored again; it keeps its original header, so a Sieve script that
// files on the server's own headers still sees them.
//
// Lists (SQLite) hold the per-user sender lists and digest preferences; the lists answer
// the rule facts rcpt.allows_sender and rcpt.blocks_sender.
package quarantine
