package sieve

import (
	"context"
	"time"
)

// Options select what Compile accepts and the limits a script runs under.
type Options struct {
	// Extensions lists the capability strings a script may require (e.g. "fileinto",
	// "vacation"); nil means every supported extension (see Supported).
	Extensions []string
	// Limits bound a script's size and run; zero fields take Pigeonhole's defaults.
	Limits Limits
	// Delimiter holds the recipient delimiter characters for subaddress (RFC 5233),
	// e.g. "+"; empty means "+".
	Delimiter string
	// Include loads the scripts named by include (RFC 6609); nil makes include fail.
	Include IncludeLoader
	// Vacation holds the administrator's vacation settings (Pigeonhole's
	// sieve_vacation_* and sieve_user_email); the zero value is Pigeonhole's default.
	Vacation VacationOptions
	// EditHeader holds the editheader settings (Pigeonhole's sieve_editheader_*).
	EditHeader EditHeaderOptions
}

// EditHeaderOptions restrict what addheader and deleteheader may touch (RFC 5293 §7).
// Whatever they say, Received, Auto-Submitted and X-Sieve-Redirected-From are never
// deleted, X-Sieve-Redirected-From never added, and Subject is always editable.
type EditHeaderOptions struct {
	Protected    []string // neither added nor deleted
	ForbidAdd    []string
	ForbidDelete []string
	// MaxHeaderSize bounds an added field's value in bytes (default 2048).
	MaxHeaderSize int
}

func (o EditHeaderOptions) maxSize() int {
	if o.MaxHeaderSize > 0 {
		return o.MaxHeaderSize
	}
	return 2048
}

func listed(l []string, name string) bool {
	for _, x := range l {
		if equalFoldASCII(x, name) {
			return true
		}
	}
	return false
}

// allowAdd and allowDelete follow Pigeonhole's rules (ext-editheader-common.c).
func (o EditHeaderOptions) allowAdd(name string) bool {
	switch {
	case equalFoldASCII(name, "subject"):
		return true
	case equalFoldASCII(name, "x-sieve-redirected-from"):
		return false
	}
	return !listed(o.Protected, name) && !listed(o.ForbidAdd, name)
}

func (o EditHeaderOptions) allowDelete(name string) bool {
	switch {
	case equalFoldASCII(name, "received"), equalFoldASCII(name, "auto-submitted"),
		equalFoldASCII(name, "x-sieve-redirected-from"):
		return false
	case equalFoldASCII(name, "subject"):
		return true
	}
	return !listed(o.Protected, name) && !listed(o.ForbidDelete, name)
}

// VacationOptions are the vacation settings of Pigeonhole a server may change.
type VacationOptions struct {
	// DefaultSubject is the reply's subject when the script gives none and the
	// message has no subject ("Automated reply" when empty).
	DefaultSubject string
	// DefaultSubjectTemplate, when set, makes the subject when the script gives none:
	// "%$" (or "%{subject}") stands for the original subject, "%%" for "%".
	DefaultSubjectTemplate string
	// MaxSubjectRunes cuts longer subjects, ending them with "…" (default 256).
	MaxSubjectRunes int
	// UserEmail is the user's own address, besides the envelope recipient, for the
	// "is it addressed to me" check and as the reply's From.
	UserEmail string
	// UseOriginalRecipient counts the envelope's OrigTo as the user's address.
	UseOriginalRecipient bool
	// DontCheckRecipient replies even to mail not addressed to the user.
	DontCheckRecipient bool
	// ToHeaderIgnoreEnvelope takes the reply's To: field from the message's
	// Reply-To, Sender or From even when it is not the envelope sender.
	ToHeaderIgnoreEnvelope bool
}

// Location says where include looks for a script (RFC 6609 §3.2).
type Location int

const (
	// Personal scripts belong to the user (":personal", the default).
	Personal Location = iota
	// Global scripts are the administrator's (":global").
	Global
)

func (l Location) String() string {
	if l == Global {
		return "global"
	}
	return "personal"
}

// IncludeLoader returns the source of the script name at loc. A missing script is an
// error wrapping fs.ErrNotExist (include :optional then skips it).
type IncludeLoader func(loc Location, name string) ([]byte, error)

// Limits bound what a script may do. Zero fields take the defaults (Pigeonhole's).
type Limits struct {
	MaxScriptSize   int           // bytes of source; default 1 MiB
	MaxActions      int           // actions per run; default 32
	MaxRedirects    int           // redirects per run; default 4
	MaxNesting      int           // nested blocks, and nested tests, each; default 32
	MaxVariables    int           // variables per scope; default 255
	MaxVariableSize int           // bytes per variable value; default 4096
	MaxIncludeDepth int           // nested includes; default 10
	MaxIncludes     int           // scripts included in all; default 255
	MaxCPU          time.Duration // run time; default 30s
	MaxMatchInput   int           // bytes of header or body a test examines; default 1 MiB
}

// Defaults of Limits, after Pigeonhole's (sieve_max_script_size, sieve_max_actions, ...).
const (
	DefaultMaxScriptSize   = 1 << 20
	DefaultMaxActions      = 32
	DefaultMaxRedirects    = 4
	DefaultMaxNesting      = 32
	DefaultMaxVariables    = 255
	DefaultMaxVariableSize = 4096
	DefaultMaxIncludeDepth = 10
	DefaultMaxIncludes     = 255
	DefaultMaxCPU          = 30 * time.Second
	DefaultMaxMatchInput   = 1 << 20
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxScriptSize, DefaultMaxScriptSize)
	def(&l.MaxActions, DefaultMaxActions)
	def(&l.MaxRedirects, DefaultMaxRedirects)
	def(&l.MaxNesting, DefaultMaxNesting)
	def(&l.MaxVariables, DefaultMaxVariables)
	def(&l.MaxVariableSize, DefaultMaxVariableSize)
	def(&l.MaxIncludeDepth, DefaultMaxIncludeDepth)
	def(&l.MaxIncludes, DefaultMaxIncludes)
	def(&l.MaxMatchInput, DefaultMaxMatchInput)
	if l.MaxCPU <= 0 {
		l.MaxCPU = DefaultMaxCPU
	}
	return l
}

// Envelope is the SMTP envelope of the message being delivered and the environment items.
type Envelope struct {
	// From is the reverse path without brackets ("" for the null sender <>).
	From string
	// To is the recipient being delivered to (the user's address).
	To string
	// OrigTo is the original recipient before aliasing (envelope "orig_to"); may be "".
	OrigTo string
	// Auth is the authenticated submitter, if any (envelope "auth").
	Auth string
	// Env holds environment items (RFC 5183 §4: "domain", "host", "name", "version",
	// "remote-host", "remote-ip", "phase", "location", ...). Missing items are unknown.
	Env map[string]string
}

// Host is what a run asks of the delivery system. A nil Host is allowed: no mailbox
// exists, nothing was seen, the clock is time.Now and spam and virus are not tested.
type Host interface {
	// MailboxExists reports whether the user's mailbox exists (mailboxexists, RFC 5490).
	MailboxExists(ctx context.Context, mailbox string) bool
	// Seen reports whether key was recorded (see Result.Remember) less than period ago.
	// Duplicate (RFC 7352) and vacation (RFC 5230 §4.2) keep their memory this way.
	Seen(ctx context.Context, key string, period time.Duration) bool
	// Now is the current time (currentdate, RFC 5260).
	Now() time.Time
	// SpamScore returns the spam score as a percentage 0..100 (0 surely ham, 100 surely
	// spam) and whether the message was tested (spamtest, RFC 5235).
	SpamScore(ctx context.Context) (percent float64, tested bool)
	// VirusScore returns 1 (clean) .. 5 (surely infected) and whether it was tested
	// (virustest, RFC 5235 §3.3).
	VirusScore(ctx context.Context) (level int, tested bool)
}

// Result is what a run decided. The delivery executes Actions in order.
type Result struct {
	// Actions are the actions to perform, duplicates merged (RFC 5228 §2.10.3); the
	// implicit keep, when it applies, is the last, a Keep with Implicit set.
	Actions []Action
	// ImplicitKeep reports whether no action cancelled the implicit keep.
	ImplicitKeep bool
	// Header is the message's header block as edited by editheader (RFC 5293), ending
	// with the empty line; nil when the script did not change it.
	Header []byte
	// Remember lists the keys the delivery should record for Host.Seen once the
	// message is delivered (duplicate, sent vacation replies).
	Remember []Memory
	// Warnings are run-time problems that did not stop the script (e.g. an invalid
	// regular expression built from a variable); the delivery should log them.
	Warnings []string
}

// Memory is one key to record for Host.Seen.
type Memory struct {
	Key    string
	Period time.Duration
	// Refresh says the key's time is updated even when already recorded (duplicate
	// :last, RFC 7352 §3.2); otherwise an unexpired record keeps its first time.
	Refresh bool
}

// Action is one of Keep, FileInto, Redirect, Reject, Discard, Vacation, AddHeader-free
// delivery actions.
type Action interface{ action() }

// Keep stores the message in the user's INBOX (RFC 5228 §4.3).
type Keep struct {
	Flags    []string // IMAP flags (RFC 5232), nil for none
	Implicit bool     // the implicit keep (§2.10.2)
	// Header is the header block as editheader left it when the action ran (RFC 5293
	// §6), nil when unchanged; the same holds for FileInto and Redirect.
	Header []byte
}

// FileInto stores the message in Mailbox (RFC 5228 §4.1).
type FileInto struct {
	Mailbox    string
	Flags      []string
	Create     bool   // :create (RFC 5490 §3.2): create a missing mailbox
	Copy       bool   // :copy (RFC 3894): did not cancel the implicit keep
	SpecialUse string // :specialuse (RFC 8579): prefer the mailbox with this use
	Header     []byte
}

// Redirect forwards the message to Address (RFC 5228 §4.2).
type Redirect struct {
	Address string
	Copy    bool
	Header  []byte
}

// Reject refuses the message with Reason (RFC 5429): at SMTP/LMTP time when the
// transaction is open, else by a bounce (reject) or only at protocol level (ereject).
type Reject struct {
	Reason   string
	Extended bool // ereject
}

// Discard drops the message silently (RFC 5228 §4.4).
type Discard struct{}

// Vacation is an auto-reply (RFC 5230). Skip, when not empty, says why it must not be
// sent (Pigeonhole's rules: list or bulk mail, auto-submitted, not addressed to the
// user, a system sender, or already answered within Period).
type Vacation struct {
	To        string // the original sender, who gets the reply
	From      string // :from, or "" for the user's own address
	Subject   string // the reply's subject (:subject or "Auto: " + original)
	Reason    string // the reply body, or a MIME entity when Mime
	Mime      bool
	Handle    string
	Period    time.Duration
	InReplyTo string // the original Message-ID
	Skip      string
	// ToHeader is the reply's To: field: the original's From, Sender or Reply-To
	// field that names the sender (keeping its display name), else To.
	ToHeader string
	// References is the reply's References: field (RFC 5230 §5.8): the original's
	// References and Message-ID.
	References string
}

func (Keep) action()     {}
func (FileInto) action() {}
func (Redirect) action() {}
func (Reject) action()   {}
func (Discard) action()  {}
func (Vacation) action() {}

// RuntimeError is an error while running a script, at the command that failed.
type RuntimeError struct {
	Line, Col int
	Msg       string
}

func (e *RuntimeError) Error() string { return "line " + srcPos{e.Line, e.Col}.String() + ": " + e.Msg }
