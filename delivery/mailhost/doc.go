// Package mailhost delivers the mail of a front-end to the back-end that holds each
// recipient's mailbox: it asks the directory for the user's mail host (a PostgreSQL or
// LDAP directory shared by the nodes), maps the host to its LMTP address
// (directory.Config.HostOf: a hosts table or the NAME:24 convention) and delivers by LMTP
// (RFC 2033), so a front-end keeps no mailboxes. It is the final delivery of
// mode: frontend, what Cyrus Murder's front-ends do with lmtpproxyd.
//
// Nothing is bounced that a retry could deliver: a user being moved between back-ends
// (state "moving"), a directory that cannot be asked, a mail host without an address and
// a back-end that is down are temporary failures (the queue keeps the message and
// retries); only an address the directory does not know, or a back-end's own 5xx, fails
// the recipient.
package mailhost
