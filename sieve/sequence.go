package sieve

import (
	"context"
	"errors"
	"time"
)

// RunSequence runs scripts one after the other on one message, as Pigeonhole runs
// sieve_before scripts, the user's script and sieve_after scripts: they share one
// result (actions, imap4flags' internal flags, header edits), each has its own
// variables, stop ends only the script that runs it, and the sequence ends after a
// script that leaves the message neither kept nor to be kept (a fileinto, redirect,
// discard or reject without keep). A run-time error ends the sequence: the result then
// holds the implicit keep alone, and the error names the script's position.
func RunSequence(ctx context.Context, scripts []*Script, msg Message, env Envelope, host Host) (*Result, error) {
	if len(scripts) == 0 {
		return nil, errors.New("sieve: RunSequence needs at least one script")
	}
	if host == nil {
		host = nopHost{}
	}
	first := scripts[0]
	r := &runner{
		ctx: ctx, s: first, msg: msg, env: &env, host: host,
		deadline:    time.Now().Add(first.lim.MaxCPU),
		matchBudget: 100_000_000,
	}
	for i, s := range scripts {
		r.s, r.vars, r.match, r.includedOnce = s, make([]string, s.nvars), nil, nil
		err := r.runScript(s)
		if err != nil && err != errStop && err != errReturn {
			var re *RuntimeError
			if errors.As(err, &re) {
				re.Msg = "script " + itoa(i+1) + " of the sequence: " + re.Msg
			}
			return failsafe(r), err
		}
		if r.cancelled && !r.explicitKeep {
			break
		}
	}
	return r.result(), nil
}
