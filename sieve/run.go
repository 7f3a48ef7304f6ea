package sieve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// errStop ends the script (stop, RFC 5228 §3.3); errReturn ends an included script
// (return, RFC 6609 §3.4).
var (
	errStop   = errors.New("stop")
	errReturn = errors.New("return")
)

type runner struct {
	ctx     context.Context
	s       *Script
	msg     Message
	env     *Envelope
	host    Host
	vars    []string
	match   []string
	globals map[string]string

	acts         []Action
	cancelled    bool // implicit keep cancelled
	explicitKeep bool
	nRedirects   int
	nActions     int
	hadVacation  bool
	hadReject    bool
	flags        []string // imap4flags internal variable (RFC 5232 §3)
	remember     []Memory
	dupSeen      map[string]bool
	deadline     time.Time
	steps        int
	hdr          *headerEdit
	body         *bodyCache
	caps         []string
	includeDepth int
	includedOnce map[string]bool
	currentPos   Pos
}

// Run executes the script against msg. On a run-time error the result still holds the
// implicit keep, so the message is never lost, and the error says why.
func (s *Script) Run(ctx context.Context, msg Message, env Envelope, host Host) (*Result, error) {
	if host == nil {
		host = nopHost{}
	}
	r := &runner{
		ctx: ctx, s: s, msg: msg, env: &env, host: host,
		vars:     make([]string, s.nvars),
		deadline: time.Now().Add(s.lim.MaxCPU),
	}
	err := r.runScript(s)
	if err != nil && err != errStop {
		return failsafe(r), err
	}
	return r.result(), nil
}

// runScript runs one script (the main one or an included one) in its own variable scope.
func (r *runner) runScript(s *Script) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &RuntimeError{Line: r.currentPos.Line, Col: r.currentPos.Col, Msg: fmt.Sprintf("internal error: %v", p)}
		}
	}()
	return r.execBlock(s.cmds)
}

func (r *runner) execBlock(cmds []cmd) error {
	for _, c := range cmds {
		if err := r.tick(); err != nil {
			return err
		}
		if err := c.exec(r); err != nil {
			return err
		}
	}
	return nil
}

// tick bounds a run's time: the context and MaxCPU are checked every 64 steps.
func (r *runner) tick() error {
	r.steps++
	if r.steps&63 != 0 {
		return nil
	}
	if err := r.ctx.Err(); err != nil {
		return &RuntimeError{Line: r.currentPos.Line, Col: r.currentPos.Col, Msg: "execution aborted: " + err.Error()}
	}
	if time.Now().After(r.deadline) {
		return &RuntimeError{Line: r.currentPos.Line, Col: r.currentPos.Col, Msg: "execution exceeded the CPU time limit"}
	}
	return nil
}

func (r *runner) errorf(p Pos, format string, args ...any) error {
	return &RuntimeError{Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}

func failsafe(r *runner) *Result {
	return &Result{Actions: []Action{Keep{Flags: nil, Implicit: true}}, ImplicitKeep: true}
}

func (r *runner) result() *Result {
	res := &Result{Actions: r.acts, Remember: r.remember}
	if !r.cancelled && !r.explicitKeep {
		res.ImplicitKeep = true
		res.Actions = append(res.Actions, Keep{Flags: cloneFlags(r.flags), Implicit: true})
	}
	if r.hdr != nil && r.hdr.changed {
		res.Header = r.hdr.bytes()
	}
	return res
}

func cloneFlags(f []string) []string {
	if len(f) == 0 {
		return nil
	}
	return append([]string(nil), f...)
}

// countAction enforces MaxActions.
func (r *runner) countAction(p Pos) error {
	r.nActions++
	if r.nActions > r.s.lim.MaxActions {
		return r.errorf(p, "total number of actions exceeds policy limit (%d)", r.s.lim.MaxActions)
	}
	return nil
}

func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

func mergeFlags(a, b []string) []string {
	for _, f := range b {
		if !hasFlag(a, f) {
			a = append(a, f)
		}
	}
	return a
}

// store adds a keep or fileinto, merging a store into a mailbox already stored to
// (RFC 5228 §4.1: the message is filed once).
func (r *runner) store(p Pos, mailbox string, flags []string, fi *FileInto) error {
	if r.hadReject {
		return r.errorf(p, "store action conflicts with the earlier reject")
	}
	for i, a := range r.acts {
		switch x := a.(type) {
		case Keep:
			if sameMailbox("INBOX", mailbox) {
				x.Flags = mergeFlags(x.Flags, flags)
				r.acts[i] = x
				return nil
			}
		case FileInto:
			if sameMailbox(x.Mailbox, mailbox) {
				x.Flags = mergeFlags(x.Flags, flags)
				if fi != nil && !fi.Copy {
					x.Copy = false
				}
				if fi != nil && fi.Create {
					x.Create = true
				}
				r.acts[i] = x
				return nil
			}
		}
	}
	if err := r.countAction(p); err != nil {
		return err
	}
	if fi == nil {
		r.acts = append(r.acts, Keep{Flags: flags})
	} else {
		fi.Flags = flags
		r.acts = append(r.acts, *fi)
	}
	return nil
}

func (r *runner) redirect(p Pos, addr string, cp bool) error {
	if r.hadReject {
		return r.errorf(p, "redirect action conflicts with the earlier reject")
	}
	for i, a := range r.acts {
		if x, ok := a.(Redirect); ok && strings.EqualFold(x.Address, addr) {
			if !cp && x.Copy {
				x.Copy = false
				r.acts[i] = x
			}
			if !cp {
				r.cancelled = true
			}
			return nil
		}
	}
	r.nRedirects++
	if r.nRedirects > r.s.lim.MaxRedirects {
		return r.errorf(p, "number of redirect actions exceeds policy limit (%d)", r.s.lim.MaxRedirects)
	}
	if err := r.countAction(p); err != nil {
		return err
	}
	r.acts = append(r.acts, Redirect{Address: addr, Copy: cp})
	if !cp {
		r.cancelled = true
	}
	return nil
}

// nopHost is the Host of a nil Host.
type nopHost struct{}

func (nopHost) MailboxExists(context.Context, string) bool       { return false }
func (nopHost) Seen(context.Context, string, time.Duration) bool { return false }
func (nopHost) Now() time.Time                                   { return time.Now() }
func (nopHost) SpamScore(context.Context) (float64, bool)        { return 0, false }
func (nopHost) VirusScore(context.Context) (int, bool)           { return 0, false }
