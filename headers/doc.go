// Package headers runs Postfix-compatible header_checks, mime_header_checks,
// nested_header_checks and body_checks tables (regexp: and pcre: syntax) over a message,
// and judges its Date header.
//
// A table file loads unchanged from a Postfix installation: /pattern/flags ACTION text,
// !/pattern/, if/endif blocks (nested), comments, continuation lines, any delimiter, the
// Postfix flags (pcre: i m s x A E U X; regexp: i x m) with case-insensitive matching by
// default, and $1, ${1}, $(1) and $$ in the result. Patterns compile with Go's RE2 engine
// when it accepts them (with the table's semantics: leftmost-longest for POSIX regexp:
// tables) and otherwise with github.com/dlclark/regexp2, a backtracking engine with
// back-references and look-around, always under a match timeout. A load error names the
// file and line. Where Postfix logs a warning and skips a broken rule, LoadMap refuses the
// file, so a typo never silently disables a check.
//
// Matching follows Postfix's cleanup(8): header checks see one logical header at a time
// ("Name: value", the physical lines of a folded header joined by "\n"); the MIME headers
// (Content-*, MIME-Version) of the message, the headers of MIME body parts and those of
// attached message/rfc822 parts go to mime_header_checks, the other headers of an attached
// message to nested_header_checks, and body_checks see every other line, one physical line
// at a time, boundaries included, without decoding.
//
// Maps, the Policy adapter and DatePolicy expose the results to portcullis rules.
package headers
