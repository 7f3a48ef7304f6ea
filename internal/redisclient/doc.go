// Package redisclient makes the Redis clients of the policies that share state through
// Redis (greylist, ratelimit): every call bounded by one timeout, no retries, and a
// circuit breaker, so that a hung server (stopped, overloaded, behind a dead link) costs
// a few timeouts and then nothing, instead of one timeout on every counted command of
// every SMTP session. While the circuit is open, calls fail at once with ErrOpen and the
// caller does what it does when Redis fails: the rate limits count locally, greylisting
// follows its on_error.
//
// The breaker opens after Failures consecutive failures (a network error or a timeout;
// an error reply of a live server is no failure), stays open for Open, then lets one
// call through as a probe: its success closes the circuit, its failure opens it again.
package redisclient
