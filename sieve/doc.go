// Package sieve is a Sieve mail filtering language (RFC 5228) compiler and interpreter
// with the extensions webmail clients and Dovecot's Pigeonhole users rely on.
//
// A script is compiled once (Compile, or a Cache keyed by the script's content hash)
// and run for each message (Script.Run). A run reads the message (Message; NewMessage
// wraps raw bytes), the SMTP envelope (Envelope) and asks a small Host for what only
// the delivery system knows: whether a mailbox exists, the duplicate and vacation
// memory, the clock, the spam and virus scores. It returns the actions to perform
// (Result): Keep, FileInto, Redirect, Reject, Discard, Vacation, with the implicit
// keep (RFC 5228 §2.10.2) made explicit. The package performs no action itself and
// imports nothing of portcullis's servers.
//
// Supported capabilities (Supported lists them): the base language with
// encoded-character and the comparators i;octet, i;ascii-casemap, i;ascii-numeric;
// fileinto, envelope, reject and ereject (RFC 5429), variables (RFC 5229), vacation
// (RFC 5230) and vacation-seconds (RFC 6131), relational (RFC 5231), subaddress (RFC
// 5233), body (RFC 5173), imap4flags (RFC 5232), copy (RFC 3894), date and index (RFC
// 5260), include (RFC 6609), mailbox (RFC 5490), environment (RFC 5183), regex
// (draft-ietf-sieve-regex), spamtest, spamtestplus and virustest (RFC 5235), editheader
// (RFC 5293), duplicate (RFC 7352), ihave (RFC 5463) and special-use (RFC 8579).
//
// RunSequence runs an administrator's scripts around the user's as Pigeonhole's
// sieve_before and sieve_after do. Result.String prints the actions as Pigeonhole's
// sieve-test does. Options.Vacation and Options.EditHeader carry Pigeonhole's
// vacation and editheader settings.
//
// Limits (Limits, defaults after Pigeonhole) bound the script size, nesting, actions,
// redirects, variables, includes and run time: a hostile script fails to compile or
// stops with a RuntimeError; it never hangs or panics. A run that fails returns a
// Result holding only the implicit keep, so a message is never lost.
package sieve
