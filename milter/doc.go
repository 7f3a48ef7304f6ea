// Package milter runs the whole portcullis pipeline for Postfix through the milter
// protocol (version 6, Sendmail's libmilter protocol as Postfix speaks it): a site that
// keeps Postfix lists portcullis in smtpd_milters (and non_smtpd_milters, for mail
// submitted locally), and every stage runs — connect, helo, mail, rcpt and the data
// stage with the whole message (headers, body, attachments, Bayes, ClamAV, DKIM and
// DMARC), as portcullis's own SMTP server runs it.
//
// Each milter connection is one SMTP session of Postfix. The connect event gives the
// client address and Postfix's verified name, the macros the rest ({client_ptr},
// {daemon_addr}, {tls_version} and {cipher} at HELO, {auth_authen} and i at MAIL); the
// header, end-of-header and body events rebuild the message exactly as written
// (SMFIP_HDR_LEADSPC), within max_message_size and a memory budget shared by all
// sessions; end of message runs the data stage.
//
// Decisions become milter replies: a reject or tempfail is SMFIR_REPLYCODE with
// portcullis's code, enhanced code and text (Postfix gives them to its client as they
// are), a discard SMFIR_DISCARD, a quarantine SMFIR_QUARANTINE (Postfix's hold queue);
// the headers the policies and rules add (Authentication-Results, Received-SPF,
// X-Spam-*, add_header) are inserted at the top of the message at end of message.
//
// Packets are checked before go-milter parses them (guardConn): a malformed one ends
// its connection with a logged error, never the process.
package milter
