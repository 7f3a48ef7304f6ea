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
	currentPos   srcPos
	warnings     []string
	matchBudget  int // steps left for :matches (globMatch)
}

// Run executes the script against msg. On a run-time error the result still holds the
// implicit keep, so the message is never lost, and the error says why.
func (s *Script) Run(ctx context.Context, msg Message, env Envelope, host Host) (*Result, error) {
	return s.runWith(ctx, nil, msg, env, host)
}

// runWith is Run with a hook that sees the runner before it starts (the test suite's).
func (s *Script) runWith(ctx context.Context, hook func(*runner), msg Message, env Envelope, host Host) (*Result, error) {
	if host == nil {
		host = nopHost{}
	}
	r := &runner{
		ctx: ctx, s: s, msg: msg, env: &env, host: host,
		vars:     make([]string, s.nvars),
		deadline: time.Now().Add(s.lim.MaxCPU),
		// 100M steps of wildcard matching is about a second: far beyond any real
		// filter, short of a hang.
		matchBudget: 100_000_000,
	}
	if hook != nil {
		hook(r)
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

// warnf records a run-time problem that does not stop the script (Result.Warnings).
func (r *runner) warnf(p srcPos, format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf("line %d:%d: ", p.Line, p.Col)+fmt.Sprintf(format, args...))
}

func (r *runner) errorf(p srcPos, format string, args ...any) error {
	return &RuntimeError{Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}

func failsafe(r *runner) *Result {
	return &Result{Actions: []Action{Keep{Flags: nil, Implicit: true}}, ImplicitKeep: true}
}

func (r *runner) result() *Result {
	res := &Result{Actions: r.acts, Remember: r.remember, Warnings: r.warnings}
	if !r.cancelled && !r.explicitKeep {
		res.ImplicitKeep = true
		res.Actions = append(res.Actions, Keep{Flags: cloneFlags(r.flags), Implicit: true, Header: r.editedHeader()})
	}
	res.Header = r.editedHeader()
	return res
}

// editedHeader is the header as edited so far, nil when editheader changed nothing.
func (r *runner) editedHeader() []byte {
	if r.hdr == nil || !r.hdr.changed {
		return nil
	}
	return r.hdr.bytes()
}

func cloneFlags(f []string) []string {
	if len(f) == 0 {
		return nil
	}
	return append([]string(nil), f...)
}

// countAction enforces MaxActions.
func (r *runner) countAction(p srcPos) error {
	r.nActions++
	if r.nActions > r.s.lim.MaxActions {
		return r.errorf(p, "total number of actions exceeds policy limit (%d)", r.s.lim.MaxActions)
	}
	return nil
}

// sameMailbox compares mailbox names, INBOX (and an INBOX hierarchy prefix) being
// case-insensitive (RFC 3501 §5.1).
func sameMailbox(a, b string) bool {
	return NormalizeMailbox(a) == NormalizeMailbox(b)
}

// NormalizeMailbox spells INBOX, and INBOX as the first element of a hierarchical name
// ("Inbox.Sent", "inbox/x"), in capitals.
func NormalizeMailbox(m string) string {
	if len(m) >= 5 && strings.EqualFold(m[:5], "INBOX") && (len(m) == 5 || m[5] == '.' || m[5] == '/') {
		return "INBOX" + m[5:]
	}
	return m
}

// store adds a keep or fileinto, merging a store into a mailbox already stored to
// (RFC 5228 §4.1: the message is filed once).
func (r *runner) store(p srcPos, mailbox string, flags []string, fi *FileInto) error {
	if r.hadReject {
		return r.errorf(p, "store action conflicts with the earlier reject")
	}
	for i, a := range r.acts {
		switch x := a.(type) {
		case Keep:
			if sameMailbox("INBOX", mailbox) {
				// The last flag list wins (RFC 5232 §5).
				x.Flags = flags
				r.acts[i] = x
				return nil
			}
		case FileInto:
			if sameMailbox(x.Mailbox, mailbox) {
				x.Flags = flags
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
		r.acts = append(r.acts, Keep{Flags: flags, Header: r.editedHeader()})
	} else {
		fi.Flags = flags
		fi.Header = r.editedHeader()
		r.acts = append(r.acts, *fi)
	}
	return nil
}

func (r *runner) redirect(p srcPos, addr string, cp bool) error {
	if r.hadReject {
		return r.errorf(p, "redirect action conflicts with the earlier reject")
	}
	for i, a := range r.acts {
		if x, ok := a.(Redirect); ok && sameAddress(x.Address, addr) {
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
	r.acts = append(r.acts, Redirect{Address: addr, Copy: cp, Header: r.editedHeader()})
	if !cp {
		r.cancelled = true
	}
	return nil
}

// sameAddress compares addresses as mail does: the local part exactly, the domain
// case-insensitively (RFC 5321 §2.4).
func sameAddress(a, b string) bool {
	i, j := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if i < 0 || j < 0 {
		return a == b
	}
	return a[:i] == b[:j] && strings.EqualFold(a[i:], b[j:])
}

// nopHost is the Host of a nil Host.
type nopHost struct{}

func (nopHost) MailboxExists(context.Context, string) bool       { return false }
func (nopHost) Seen(context.Context, string, time.Duration) bool { return false }
func (nopHost) Now() time.Time                                   { return time.Now() }
func (nopHost) SpamScore(context.Context) (float64, bool)        { return 0, false }
func (nopHost) VirusScore(context.Context) (int, bool)           { return 0, false }
