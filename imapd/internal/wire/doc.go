// Package wire reads IMAP commands as a server receives them (RFC 9051 §9 and RFC 3501
// §9, with the extensions' grammar: LITERAL+/LITERAL- RFC 7888, CONDSTORE/QRESYNC RFC
// 7162, SORT/THREAD RFC 5256, ESEARCH RFC 4731, MULTIAPPEND RFC 3502, BINARY RFC 3516,
// WITHIN RFC 5032, ID RFC 2971, QUOTA RFC 9208, LIST-EXTENDED RFC 5258, COMPRESS RFC 4978)
// into typed commands, streaming from the connection.
//
// It is the parser half of portcullis's own IMAP protocol layer (docs/architecture.md,
// "The IMAP protocol layer"): every input is bounded (line length, string literals,
// message literals, list items, nesting of search keys, sequence-set ranges), every
// malformed command is an *Error saying whether it is BAD or NO, and after one the parser
// skips the rest of the command so the session goes on; only input it cannot resynchronise
// with (a non-synchronising literal larger than it may skip) is fatal.
//
// imapd's wireconn.go reads every connection's commands with it and answers them.
package wire
