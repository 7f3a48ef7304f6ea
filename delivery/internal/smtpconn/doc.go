// Package smtpconn is the client side shared by delivery/lmtp and delivery/relay: one
// SMTP or LMTP session on go-smtp with deadlines taken from the context, a mail
// transaction that reports a result per recipient, and a small pool of idle sessions per
// destination for connection reuse.
package smtpconn
