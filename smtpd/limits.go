package smtpd

import (
	"context"
	"time"

	"github.com/portcullis-mail/portcullis/policy"
)

// Limiter counts what clients do against rate limits, as Postfix's smtpd asks anvil(8);
// package ratelimit implements it. Count counts event (one of the ratelimit* names) of
// the client c (and of its authenticated user; rcpt is the recipient of an rcpt event),
// stores the counts in c.Rate (rules: client.rate.*) and returns the reply refusing the
// event when it is over a limit ("" otherwise). It must not block past ctx.
type Limiter interface {
	Count(ctx context.Context, event string, c *policy.Conn, rcpt string) string
}

// The events a Limiter counts.
const (
	ratelimitConnect = "connect" // at connect: "421 4.7.0 ... too many connections"
	ratelimitTLS     = "tls"     // a new TLS session: "421 4.7.0 ... too many new TLS sessions"
	ratelimitAuth    = "auth"    // AUTH: "450 4.7.1 Error: too many AUTH commands"
	ratelimitMail    = "mail"    // MAIL: "450 4.7.1 Error: too much mail"
	ratelimitRcpt    = "rcpt"    // RCPT: "450 4.7.1 Error: too many recipients"
)

// limit counts event with the Limiter and returns its refusal, if any.
func (s *Server) limit(ctx context.Context, event string, c *policy.Conn, rcpt string) (policy.Reply, bool) {
	lim := s.deps.Limiter
	if lim == nil {
		return policy.Reply{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PolicyTimeout)
	defer cancel()
	text := lim.Count(ctx, event, c, rcpt)
	if text == "" {
		return policy.Reply{}, false
	}
	r, err := policy.ParseReply(text)
	if err != nil || r.Code/100 != 4 {
		r = policy.Reply{Code: 450, Enhanced: "4.7.1", Text: "Error: rate limit exceeded"}
	}
	s.log.Warn("smtp rate limit exceeded", "id", c.ID, "event", event, "client_ip", c.IP.String(), "user", c.AuthUser, "reply", r.String())
	return r, true
}

// limitCommand counts a command's event; over a limit the command is refused with the
// limiter's reply (counted as an error of the session, as Postfix does).
func (st *connState) limitCommand(stage policy.Stage, event, rcpt string) error {
	r, over := st.srv.limit(st.ctx, event, &st.tx.Conn, rcpt)
	if !over {
		return nil
	}
	return st.refuse(stage, r, "rate_limit")
}

// recordRefusal hands the decision log a connection refused by a limit before a session
// exists (the connection pools, the connect and new-TLS-session rates): a temporary
// failure at stage, with the limit as its category.
func (s *Server) recordRefusal(c policy.Conn, stage policy.Stage, category, reply string) {
	rec := s.deps.Decisions
	if rec == nil {
		return
	}
	ev := DecisionEvent{
		Tx:       policy.NewTransaction(c),
		Decision: policy.Decision{Stage: stage, Verdict: policy.Tempfail, Category: category},
		At:       stage, Reply: reply, Rcpts: []string{}, Time: time.Now(),
	}
	rec.RecordDecision(&ev)
}
