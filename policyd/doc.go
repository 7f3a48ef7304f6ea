// Package policyd is a Postfix policy-delegation server (Postfix's SMTPD_POLICY_README):
// Postfix front-ends that keep their own SMTP server ask portcullis about each client,
// sender and recipient with check_policy_service, and portcullis answers with the
// decision of its rules.
//
// Postfix connects (TCP or a unix socket), sends a request — lines "name=value" ended by
// an empty line — and waits for one line "action=..." and an empty line; it reuses the
// connection for the next request. The server turns the attributes (client_address,
// client_name, reverse_client_name, helo_name, sender, recipient, sasl_username,
// encryption_protocol, size, ...) into a policy.Transaction and runs the engine's
// stages up to the one protocol_state names (CONNECT, EHLO/HELO, MAIL, RCPT), each once
// per mail transaction (the request's instance attribute): a message with fifty
// recipients runs its DNS lookups of the connect and mail stages once, as smtpd does.
// DATA and END-OF-MESSAGE carry no message, so the data stage's rules cannot run there.
//
// The Decision becomes Postfix's action (access(5)): a reject or tempfail is the reply
// itself ("554 5.7.1 text", "451 4.7.1 text"), which Postfix gives the client with its
// own prefix ("<rcpt>: Recipient address rejected: text"); a discard is DISCARD, a
// quarantine HOLD, a header that a rule or a policy added is PREPEND (one per request,
// each once per message), log_only rules that matched give WARN, and everything else is
// DUNNO, so that Postfix goes on with its own restrictions (OK would skip them). List
// check_policy_service after reject_unauth_destination, so that portcullis never
// decides relaying.
//
// In trouble — a line longer than the limit, too many attributes, a line that is not
// name=value, a NUL byte, a request that is not smtpd_access_policy, a client that
// stops in the middle — the server logs a warning and closes the connection without
// replying, as the protocol asks; Postfix then answers its client with a 451.
package policyd
