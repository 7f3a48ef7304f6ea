// Package smtpd is portcullis's SMTP server: MX and submission listeners on go-smtp that
// run the policy engine at every stage of the dialogue (connect, helo, mail, rcpt, data)
// and hand accepted messages to a durable queue, answering 250 only once the queue has
// the message on disk; and LMTP listeners (lmtp.go) that deliver into local mailboxes
// with one reply per recipient.
//
// Around go-smtp it adds what an MTA facing the Internet needs: connect-time policy and
// connection limits in a listener wrapper (go-smtp greets before any backend code runs),
// relay control (local domains, trusted networks, authenticated users) that also refuses
// the classic routing tricks, AUTH PLAIN and LOGIN only over TLS, a self-signed
// certificate when none is configured, idle and total timeouts that go-smtp's single
// ReadTimeout cannot express, refusal of bare CR and bare LF in DATA (SMTP smuggling),
// the PROXY protocol, one structured log record per stage decision and Prometheus
// metrics.
package smtpd
