// Package content walks a MIME message under hard limits and reports what it holds: every
// part with its raw bytes, the attachments (names, extensions, declared and detected types,
// executables found by their magic numbers, Office macros, archives and their entries), the
// body text decoded to UTF-8 with HTML reduced to text, and the URLs of the body.
//
// The walker is written for hostile input. It never panics and never fails on malformed
// MIME: broken or missing boundaries, bad transfer encodings, unknown charsets and
// ambiguous parameters are recorded in Message.Errors and Message.Malformed, and an
// attachment whose name cannot be decided (a filename parameter given twice, an
// undecodable RFC 2231 value) is marked suspicious, never treated as nameless. Limits
// (Limits) bound the bytes read, the parts, the nesting depth, the header bytes, the
// decoded bytes and the archive entries, so a zip bomb or a million nested multiparts cost
// a bounded amount of work. A walk that stops at a limit says which
// (Message.LimitsHit) and is Truncated: what it did not see may hold anything, so the
// policy reports it as unknown (content.truncated), never as clean.
//
// Header, Content-Type and Content-Disposition parsing, the MIME splitter and the transfer
// decoders are our own, because they must keep byte offsets into the original message
// and survive input that strict parsers reject; charsets come from go-message's charset
// package (golang.org/x/text) and RFC 2047 words from mime.WordDecoder.
//
// Walk is the core API; Policy exposes the result to portcullis rules as the facts of a
// data-stage policy, and Parse memoises one walk per policy.Message so that several
// policies share it.
package content
