package imapd

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/store"
)

// opTimeout bounds one store operation.
const opTimeout = 2 * time.Minute

// connCtl is what the session needs of its connection (wireConn; an interface so that
// the session logic stays apart from the protocol layer).
type connCtl interface {
	EnabledCaps() imap.CapSet
	Bye(text string) error
	NetConn() net.Conn
}

// updateWriter writes the unsolicited responses of a poll.
type updateWriter interface {
	WriteExpunge(seq uint32) error
	WriteNumMessages(n uint32) error
	WriteNumRecent(n uint32) error
	WriteMailboxFlags(flags []imap.Flag) error
	// WriteMessageFlags writes "* seq FETCH (UID uid FLAGS (...))", with MODSEQ when
	// modseq is not 0 (a CONDSTORE session, RFC 7162 §3.2).
	WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag, modseq uint64) error
}

// fetchWriter starts the FETCH response of one message.
type fetchWriter interface {
	CreateMessage(seq uint32) msgWriter
}

// msgWriter writes the items of one FETCH response.
type msgWriter interface {
	WriteUID(uid imap.UID)
	WriteFlags(flags []imap.Flag)
	WriteRFC822Size(size int64)
	WriteInternalDate(t time.Time)
	WriteBodySection(section *imap.FetchItemBodySection, size int64) io.WriteCloser
	WriteBinarySection(section *imap.FetchItemBinarySection, size int64) io.WriteCloser
	WriteBinarySectionSize(section *imap.FetchItemBinarySectionSize, size uint32)
	WriteEnvelope(env *envelope)
	WriteBodyStructure(bs imap.BodyStructure)
	WriteModSeq(modseq uint64) // RFC 7162 §3.1.4.1
	Close() error
}

// listWriter writes LIST responses; moveWriter MOVE's.
type listWriter interface {
	WriteList(data *imap.ListData) error
}

type moveWriter interface {
	WriteCopyData(data *imap.CopyData) error
	WriteExpunge(seq uint32) error
}

type session struct {
	srv     *Server
	conn    connCtl
	cs      *connState // the listener's accounting; nil for a connection from elsewhere
	started time.Time
	counted bool // registered with the server's per-user limits

	mu   sync.Mutex // guards user and sel against the IDLE goroutine
	user *store.User
	// loginName is the user name as the client gave it at LOGIN or AUTHENTICATE (user's
	// Name is the canonical one), which the client may also put in an IMAP URL.
	loginName string
	sel       *selected
	// qresync: the client enabled QRESYNC (RFC 7162 §3.2.3): expunges are announced
	// with VANISHED.
	qresync bool
	// condstore: the client enabled CONDSTORE (RFC 7162 §3.1: ENABLE, SELECT (CONDSTORE)
	// or a command using a modseq); FETCH responses with FLAGS then carry MODSEQ.
	condstore bool
}

// selected is the session's view of its selected mailbox.
type selected struct {
	mb       store.Mailbox
	readOnly bool
	w        *store.Watcher
	uids     []uint32 // the UIDs the client knows, ascending: seq n is uids[n-1]
	pending  []store.Event
	gone     map[uint32]bool // expunged before the client learned of them
	saved    []uint32        // SEARCHRES ($)

	// keywords are the flags beyond baseFlags that the client has been told of in FLAGS,
	// by lower case. A STORE, APPEND, COPY or another session's change that brings a new
	// one sets newFlags, and the next poll sends FLAGS before any FETCH that shows it
	// (RFC 3501 §7.2.6, RFC 9051 §7.3.5).
	keywords map[string]string
	newFlags bool
	// held are the FETCH responses of this session's own STORE when it introduced a
	// keyword: they wait for the poll that follows the command and go out after the
	// FLAGS response.
	held []heldFetch

	// recent are the UIDs that are \Recent to this session (IMAP4rev1 only, recent.go).
	recent    map[uint32]bool
	recentKey recentKey
}

// withRecent returns the flags of message uid as the client sees them: with \Recent when
// it is recent to this session.
func (sel *selected) withRecent(uid uint32, flags []string) []string {
	if !sel.recent[uid] {
		return flags
	}
	return append(slices.Clone(flags), `\Recent`)
}

// rev1 reports whether the client has not ENABLEd IMAP4rev2, so that \Recent applies.
func (s *session) rev1() bool { return !s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) }

// takeRecent marks those of uids that are still recent as recent to this session, and
// takes them unless the mailbox is read-only. It returns how many there were.
func (s *session) takeRecent(sel *selected, uids []uint32) int {
	if !s.rev1() || len(uids) == 0 {
		return 0
	}
	got := s.srv.recent.recent(sel.recentKey, uids, !sel.readOnly)
	for _, uid := range got {
		sel.recent[uid] = true
	}
	return len(got)
}

type heldFetch struct {
	seq, uid uint32
	flags    []string
	modseq   uint64
}

// baseFlags are the flags every mailbox's FLAGS lists; permanentBase those a client may
// set permanently before any keyword.
var (
	baseFlags     = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagForwarded, imap.FlagJunk, imap.FlagNotJunk}
	permanentBase = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	isBaseFlag    = func() map[string]bool {
		m := map[string]bool{}
		for _, f := range baseFlags {
			m[strings.ToLower(string(f))] = true
		}
		return m
	}()
)

// learn records the keywords among flags; it reports whether one was new to the client.
func (sel *selected) learn(flags []string) bool {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) { // system flags: no allocation for the common case
			continue
		}
		lf := strings.ToLower(f)
		if isBaseFlag[lf] {
			continue
		}
		if _, ok := sel.keywords[lf]; !ok {
			sel.keywords[lf] = f
			sel.newFlags = true
			added = true
		}
	}
	return added
}

// known returns flags without the keywords the client has not been told of in FLAGS.
// FETCH and STORE read flags from the store as they are now; a keyword there that the
// client has not learned was set by another session whose event is still pending, and
// the poll after the command sends FLAGS and then that change (RFC 3501 §7.2.6; imaptest:
// "Keyword used without being in FLAGS").
func (sel *selected) known(flags []string) []string {
	for i, f := range flags {
		if strings.HasPrefix(f, `\`) || isBaseFlag[strings.ToLower(f)] {
			continue
		}
		if _, ok := sel.keywords[strings.ToLower(f)]; ok {
			continue
		}
		out := slices.Clone(flags[:i])
		for _, f := range flags[i+1:] {
			if _, ok := sel.keywords[strings.ToLower(f)]; ok || strings.HasPrefix(f, `\`) || isBaseFlag[strings.ToLower(f)] {
				out = append(out, f)
			}
		}
		return out
	}
	return flags
}

// mailboxFlags is the FLAGS list: the base flags and the keywords, sorted.
func (sel *selected) mailboxFlags() []imap.Flag {
	kw := make([]string, 0, len(sel.keywords))
	for _, f := range sel.keywords {
		kw = append(kw, f)
	}
	sort.Strings(kw)
	out := slices.Clone(baseFlags)
	for _, f := range kw {
		out = append(out, imap.Flag(f))
	}
	return out
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unselectLocked()
	if s.user != nil {
		if s.counted {
			s.srv.removeUser(s.user.Name(), s.remote())
			s.srv.sessions.Remove(s.user.Name(), s) // evict.go
			s.counted = false
		}
		s.user.Release()
		s.user = nil
	}
	return nil
}

func (s *session) remote() netip.Addr { return connlimit.RemoteIP(s.conn.NetConn()) }

// Login is called for LOGIN and AUTHENTICATE PLAIN; wireConn has already refused both
// without TLS unless the listener is trusted (Config.Trusted).
func (s *session) Login(username, password string) error {
	return s.login(username, func(c context.Context) (string, error) {
		return s.srv.auth.Authenticate(c, username, password, s.remote())
	})
}

// login checks the credentials with check (Login's, or a proxy's master login) and opens
// the user's store.
func (s *session) login(username string, check func(context.Context) (string, error)) error {
	c, cancel := ctx()
	defer cancel()
	name, err := check(c)
	if err != nil {
		s.srv.rlog.Info("imap auth failed", "remote", s.remote(), "user", username, "err", err)
		if isTemporary(err) {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "authentication temporarily unavailable"}
		}
		time.Sleep(500 * time.Millisecond) // slow down guessing; throttling is the authenticator's job
		return errAuthFailed
	}
	if err := s.srv.addUser(name, s.remote()); err != nil {
		s.srv.rlog.Info("imap login refused", "user", name, "remote", s.remote(), "err", err)
		return err
	}
	u, err := s.srv.store.Open(c, name)
	if err != nil {
		s.srv.removeUser(name, s.remote())
		s.srv.rlog.Error("imap open store", "user", name, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "mail store unavailable"}
	}
	s.mu.Lock()
	s.user = u
	s.loginName = username
	s.counted = true
	s.srv.sessions.Add(name, s, s.conn.NetConn()) // evict.go
	s.mu.Unlock()
	if s.cs != nil {
		s.cs.slot.LoggedIn()
	}
	s.srv.log.Info("imap login", "user", name, "remote", s.remote())
	return nil
}

// storeErr turns store errors into IMAP responses with response codes (RFC 5530). What
// the client asked for wrongly is a NO with the reason, never [SERVERBUG].
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, store.ErrNoMailbox):
		return no(imap.ResponseCodeNonExistent, "no such mailbox")
	case errors.Is(err, store.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "mailbox already exists")
	case errors.Is(err, store.ErrBadName):
		// The store says why ("INBOX cannot be deleted", "empty level in mailbox name").
		text := strings.TrimPrefix(err.Error(), "store: ")
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		return no(imap.ResponseCodeCannot, text)
	case errors.Is(err, store.ErrOverQuota):
		return no(imap.ResponseCodeOverQuota, "over quota")
	case errors.Is(err, store.ErrTooBig):
		return no(imap.ResponseCodeTooBig, "message too big")
	case errors.Is(err, store.ErrTooMany):
		return no(imap.ResponseCodeLimit, "too many mailboxes")
	case errors.Is(err, store.ErrNoMessage):
		return no("EXPUNGEISSUED", "message was expunged")
	case errors.Is(err, store.ErrClosed):
		return no(imap.ResponseCodeUnavailable, "server shutting down")
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return err
	}
	return no(imap.ResponseCodeServerBug, "internal error")
}

// clientCaused reports whether err is a refusal of what the client asked (logged at a
// low level and rate-limited), rather than a fault of the server (logged as an error).
func clientCaused(err error) (refusal bool, limit bool) {
	var ie *imap.Error
	switch {
	case errors.As(err, &ie):
		return true, false
	case errors.Is(err, store.ErrTooMany), errors.Is(err, store.ErrOverQuota), errors.Is(err, store.ErrTooBig):
		return true, true
	case errors.Is(err, store.ErrNoMailbox), errors.Is(err, store.ErrMailboxExists), errors.Is(err, store.ErrBadName),
		errors.Is(err, store.ErrNoMessage), errors.Is(err, store.ErrClosed):
		return true, false
	}
	return false, false
}

// logErr logs a failed operation and returns its IMAP response. Refusals the client
// caused (issue 15 item 11: a CREATE loop over the mailbox cap logged 9,023 ERROR lines
// in 0.9 s) log at Debug, or Info when a limit was hit, through the rate-limited log;
// only server faults log at Error, rate-limited too.
func (s *session) logErr(op string, err error) error {
	if err == nil {
		return nil
	}
	user := ""
	if s.user != nil {
		user = s.user.Name()
	}
	switch refusal, limit := clientCaused(err); {
	case limit:
		s.srv.rlog.Info("imap "+op+" refused", "user", user, "err", err)
	case refusal:
		s.srv.rlog.Debug("imap "+op+" refused", "user", user, "err", err)
	default:
		s.srv.rlog.Error("imap "+op, "user", user, "err", err)
	}
	return storeErr(err)
}

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "mailbox is read-only (EXAMINE)"}
}

// --- authenticated state ---

func (s *session) AppendLimit() uint32 {
	if n := s.srv.store.Config().MaxMessageSize; n < 1<<32 {
		return uint32(n)
	}
	return 1<<32 - 1
}

func (s *session) Create(name string, opts *imap.CreateOptions) error {
	c, cancel := ctx()
	defer cancel()
	use := ""
	if opts != nil {
		for _, a := range opts.SpecialUse {
			switch a {
			case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrJunk, imap.MailboxAttrTrash, imap.MailboxAttrArchive:
				use = string(a)
			default:
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "unsupported special-use attribute"}
			}
		}
	}
	// RFC 3501 §6.3.3: a trailing delimiter only says the client means a parent.
	name = strings.TrimSuffix(name, string(store.Delimiter))
	return s.logErr("create", s.user.Create(c, name, use))
}

func (s *session) Delete(name string) error {
	c, cancel := ctx()
	defer cancel()
	return s.logErr("delete", s.user.Delete(c, name))
}

func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	c, cancel := ctx()
	defer cancel()
	return s.logErr("rename", s.user.Rename(c, oldName, newName))
}

func (s *session) Subscribe(name string) error {
	c, cancel := ctx()
	defer cancel()
	return s.logErr("subscribe", s.user.SetSubscribed(c, name, true))
}

func (s *session) Unsubscribe(name string) error {
	c, cancel := ctx()
	defer cancel()
	return s.logErr("unsubscribe", s.user.SetSubscribed(c, name, false))
}

func (s *session) list(w listWriter, ref string, patterns []string, opts *imap.ListOptions) error {
	if opts == nil {
		opts = &imap.ListOptions{}
	}
	// RFC 3501 §6.3.8: an empty pattern asks for the delimiter and the root name.
	if len(patterns) == 0 || (len(patterns) == 1 && patterns[0] == "") {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: store.Delimiter})
	}
	c, cancel := ctx()
	defer cancel()
	all, err := s.user.Mailboxes(c)
	if err != nil {
		return s.logErr("list", err)
	}
	var subs []string
	if opts.SelectSubscribed || opts.ReturnSubscribed {
		if subs, err = s.user.Subscriptions(c); err != nil {
			return s.logErr("list", err)
		}
	}
	for _, d := range listMailboxes(all, subs, ref, patterns, opts) {
		if opts.ReturnStatus != nil && !hasAttr(d.Attrs, imap.MailboxAttrNonExistent) && !hasAttr(d.Attrs, imap.MailboxAttrNoSelect) {
			if st, err := s.Status(d.Mailbox, opts.ReturnStatus); err == nil {
				d.Status = st
			}
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

// listMailboxes answers LIST (and LSUB, which wireConn asks as LIST (SUBSCRIBED
// RECURSIVEMATCH) and prints CHILDINFO as \Noselect) from the folders and the
// subscription list (subs, needed only when opts select or return subscriptions):
//
//   - LIST (SUBSCRIBED) lists subscribed names, those of deleted folders with
//     \NonExistent (RFC 5258 §3.1, RFC 9051 §6.3.9).
//   - RECURSIVEMATCH also lists a matched name that is not itself selected but has a
//     subscribed descendant that no pattern matches, with CHILDINFO ("SUBSCRIBED")
//     (RFC 5258 §3.5); a descendant that is matched speaks for itself, as in Dovecot.
//   - Otherwise the existing folders are listed, with \Subscribed on RETURN (SUBSCRIBED).
func listMailboxes(all []store.Mailbox, subs []string, ref string, patterns []string, opts *imap.ListOptions) []*imap.ListData {
	exists := make(map[string]store.Mailbox, len(all))
	hasChildren := map[string]bool{}
	for _, mb := range all {
		exists[mb.Name] = mb
		for p := mb.Name; ; {
			j := strings.LastIndexByte(p, store.Delimiter)
			if j <= 0 {
				break
			}
			p = p[:j]
			hasChildren[p] = true
		}
	}
	subscribed := make(map[string]bool, len(subs))
	for _, n := range subs {
		subscribed[n] = true
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if matchList(name, store.Delimiter, ref, p) {
				return true
			}
		}
		return false
	}
	// childInfo: names with a subscribed descendant that no pattern matches.
	childInfo := map[string]bool{}
	var names []string
	if opts.SelectSubscribed {
		seen := map[string]bool{}
		for _, n := range subs {
			if matches(n) && (!opts.SelectSpecialUse || exists[n].SpecialUse != "") {
				names = append(names, n)
				seen[n] = true
			}
		}
		if opts.SelectRecursiveMatch {
			for _, n := range subs {
				if matches(n) {
					continue
				}
				for p := n; ; {
					j := strings.LastIndexByte(p, store.Delimiter)
					if j <= 0 {
						break
					}
					p = p[:j]
					if !subscribed[p] && matches(p) {
						childInfo[p] = true
						if !seen[p] {
							names = append(names, p)
							seen[p] = true
						}
					}
				}
			}
		}
		// INBOX first, then by name, as the plain listing.
		sort.Slice(names, func(i, j int) bool {
			if (names[i] == store.Inbox) != (names[j] == store.Inbox) {
				return names[i] == store.Inbox
			}
			return names[i] < names[j]
		})
	} else {
		for _, mb := range all {
			if matches(mb.Name) && (!opts.SelectSpecialUse || mb.SpecialUse != "") {
				names = append(names, mb.Name)
			}
		}
	}
	out := make([]*imap.ListData, 0, len(names))
	for _, n := range names {
		data := &imap.ListData{Delim: store.Delimiter, Mailbox: n}
		mb, ok := exists[n]
		switch {
		case !ok:
			// RFC 5258 §3: \NonExistent implies \Noselect (and so no child attributes
			// that a folder that is not there could not have).
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		case hasChildren[n]:
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		default:
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if ok && mb.SpecialUse != "" {
			// RFC 6154 §2: servers may always include special-use attributes.
			data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
		}
		if subscribed[n] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if childInfo[n] {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		out = append(out, data)
	}
	return out
}

func (s *session) Status(name string, opts *imap.StatusOptions) (*imap.StatusData, error) {
	c, cancel := ctx()
	defer cancel()
	st, err := s.user.Status(c, name)
	if err != nil {
		return nil, s.logErr("status", err)
	}
	d := &imap.StatusData{Mailbox: st.Name}
	if opts.NumMessages {
		d.NumMessages = &st.Messages
	}
	if opts.UIDNext {
		d.UIDNext = imap.UID(st.UIDNext)
	}
	if opts.UIDValidity {
		d.UIDValidity = st.UIDValidity
	}
	if opts.NumUnseen {
		d.NumUnseen = &st.Unseen
	}
	if opts.NumDeleted {
		d.NumDeleted = &st.Deleted
	}
	if opts.Size {
		d.Size = &st.Size
	}
	if opts.AppendLimit {
		l := s.AppendLimit()
		d.AppendLimit = &l
	}
	if opts.HighestModSeq {
		d.HighestModSeq = st.ModSeq
	}
	if opts.NumRecent {
		n, err := s.statusRecent(c, st)
		if err != nil {
			return nil, s.logErr("status", err)
		}
		d.NumRecent = &n
	}
	return d, nil
}

// statusRecent counts the messages of st that are still recent (recent.go).
func (s *session) statusRecent(c context.Context, st store.Status) (uint32, error) {
	if !s.rev1() {
		return 0, nil
	}
	k := recentKey{user: s.user.Name(), mailbox: st.ID, uidValidity: st.UIDValidity}
	floor := s.srv.recent.floor(k)
	switch {
	case floor == 0:
		return st.Messages, nil
	case floor >= st.UIDNext:
		return 0, nil
	}
	_, msgs, err := s.user.Messages(c, st.Name)
	if err != nil {
		return 0, err
	}
	var n uint32
	for _, m := range msgs {
		if m.UID >= floor {
			n++
		}
	}
	return n, nil
}

func (s *session) Append(name string, r imap.LiteralReader, opts *imap.AppendOptions) (*imap.AppendData, error) {
	if r.Size() > int64(s.srv.store.Config().MaxMessageSize) {
		return nil, storeErr(store.ErrTooBig)
	}
	c, cancel := ctx()
	defer cancel()
	var flags []string
	var date time.Time
	if opts != nil {
		flags = fromIMAPFlags(opts.Flags)
		date = opts.Time
	}
	res, err := s.user.Append(c, name, r, flags, date)
	if errors.Is(err, store.ErrNoMailbox) {
		// RFC 3501 §6.3.11: TRYCREATE tells the client to CREATE and retry.
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"}
	}
	if err != nil {
		return nil, s.logErr("append", err)
	}
	return &imap.AppendData{UIDValidity: res.UIDValidity, UID: imap.UID(res.UID)}, nil
}

// usage is the bytes the user's messages take (what the store's quota counts).
func (s *session) usage() (int64, error) {
	c, cancel := ctx()
	defer cancel()
	n, err := s.user.Usage(c)
	if err != nil {
		return 0, s.logErr("quota", err)
	}
	return n, nil
}

// removeAppended takes back the messages a MULTIAPPEND stored before one failed.
func (s *session) removeAppended(name string, uids []uint32) error {
	c, cancel := ctx()
	defer cancel()
	mb, err := s.user.Mailbox(c, name)
	if err != nil {
		return err
	}
	_, err = s.user.Remove(c, mb, uids)
	return err
}

// --- selected state: view and updates ---

func (s *session) Select(name string, opts *imap.SelectOptions) (*imap.SelectData, error) {
	c, cancel := ctx()
	defer cancel()
	mb0, err := s.user.Mailbox(c, name)
	if err != nil {
		return nil, s.logErr("select", err)
	}
	s.mu.Lock()
	s.unselectLocked()
	s.mu.Unlock()
	// Watch before reading the list: events that race with it are filtered by UID.
	w := s.user.Watch(mb0)
	mb, msgs, err := s.user.Messages(c, mb0.Name)
	if err != nil {
		w.Close()
		return nil, s.logErr("select", err)
	}
	sel := &selected{mb: mb, readOnly: opts != nil && opts.ReadOnly, w: w, gone: map[uint32]bool{}, keywords: map[string]string{}}
	sel.uids = make([]uint32, len(msgs))
	var firstUnseen uint32
	for i, m := range msgs {
		sel.uids[i] = m.UID
		sel.learn(m.Flags)
		if firstUnseen == 0 && !hasFlag(m.Flags, store.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
	}
	sel.newFlags = false // SELECT's own FLAGS response names them all
	sel.recent = map[uint32]bool{}
	sel.recentKey = recentKey{user: s.user.Name(), mailbox: mb.ID, uidValidity: mb.UIDValidity}
	numRecent := s.takeRecent(sel, sel.uids)
	s.mu.Lock()
	s.sel = sel
	s.mu.Unlock()
	mflags := sel.mailboxFlags()
	perm := append(append(slices.Clone(permanentBase), mflags[len(permanentBase):]...), imap.FlagWildcard)
	if sel.readOnly {
		perm = []imap.Flag{} // RFC 3501 §6.3.2: no permanent flags in a read-only mailbox
	}
	return &imap.SelectData{
		Flags:             mflags,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(msgs)),
		NumRecent:         uint32(numRecent),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(mb.UIDNext),
		UIDValidity:       mb.UIDValidity,
		HighestModSeq:     mb.ModSeq,
	}, nil
}

// highestModSeq reads the selected mailbox's HIGHESTMODSEQ now.
func (s *session) highestModSeq() (uint64, error) {
	sel, err := s.selected()
	if err != nil {
		return 0, err
	}
	c, cancel := ctx()
	defer cancel()
	mb, err := s.user.Mailbox(c, sel.mb.Name)
	if err != nil {
		return 0, err
	}
	return mb.ModSeq, nil
}

func (s *session) Unselect() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unselectLocked()
	return nil
}

func (s *session) unselectLocked() {
	if s.sel != nil {
		s.sel.w.Close()
		s.sel = nil
	}
}

func (sel *selected) maxUID() uint32 {
	if len(sel.uids) == 0 {
		return 0
	}
	return sel.uids[len(sel.uids)-1]
}

func (sel *selected) seqOf(uid uint32) int {
	i := sort.Search(len(sel.uids), func(i int) bool { return sel.uids[i] >= uid })
	if i < len(sel.uids) && sel.uids[i] == uid {
		return i + 1
	}
	return 0
}

func (sel *selected) removeAt(seq int) {
	sel.uids = append(sel.uids[:seq-1], sel.uids[seq:]...)
}

// take moves the watcher's events into pending. A watcher that overflowed means the view
// cannot be repaired: the connection is closed with BYE.
func (s *session) take(sel *selected) error {
	evs, overflowed := sel.w.Take()
	if overflowed {
		s.conn.Bye("too many mailbox changes, please reconnect")
		return errors.New("imapd: watcher overflowed")
	}
	sel.pending = append(sel.pending, evs...)
	return nil
}

// flushExpunges sends EXPUNGE for every pending expunge of a message the client knows, with
// sequence numbers computed against the view as it shrinks, and drops those events; other
// events stay pending for Poll. Used by EXPUNGE and MOVE so that each removed message is
// announced exactly once.
func (s *session) flushExpunges(sel *selected, write func(seq uint32) error, vanished func(uids []uint32) error) error {
	if err := s.take(sel); err != nil {
		return err
	}
	rest := sel.pending[:0]
	var werr error
	for _, ev := range sel.pending {
		if ev.Kind != store.Expunged {
			rest = append(rest, ev)
			continue
		}
		if err := s.removeExpunged(sel, ev.UIDs, write, vanished); werr == nil {
			werr = err
		}
	}
	sel.pending = rest
	return werr
}

// removeExpunged takes expunged uids out of the view and tells the client: one EXPUNGE
// per message with its sequence number, or, once QRESYNC is enabled (vanished not nil),
// one VANISHED with the UIDs (RFC 7162 §3.2.10).
func (s *session) removeExpunged(sel *selected, uids []uint32, write func(seq uint32) error, vanished func(uids []uint32) error) error {
	var werr error
	var gone []uint32
	for _, uid := range uids {
		delete(sel.recent, uid)
		if seq := sel.seqOf(uid); seq > 0 {
			sel.removeAt(seq)
			if vanished != nil {
				gone = append(gone, uid)
			} else if werr == nil {
				werr = write(uint32(seq))
			}
		} else if uid > sel.maxUID() {
			sel.gone[uid] = true
		}
	}
	if len(gone) > 0 && werr == nil {
		werr = vanished(gone)
	}
	return werr
}

// vanishedWriter is an updateWriter that can write VANISHED (imapd's own layer).
type vanishedWriter interface {
	WriteVanished(uids []uint32, earlier bool) error
}

// vanishedFunc returns how to announce expunges as VANISHED to a QRESYNC client, or nil.
func (s *session) vanishedFunc(w any) func([]uint32) error {
	vw, ok := w.(vanishedWriter)
	if !s.qresync || !ok {
		return nil
	}
	return func(uids []uint32) error { return vw.WriteVanished(uids, false) }
}

// poll turns pending events into untagged responses in commit order. Without
// allowExpunge (after FETCH, STORE, SEARCH: RFC 3501 §7.4.1) it stops at the first expunge.
func (s *session) poll(sel *selected, w updateWriter, allowExpunge bool) error {
	if err := s.take(sel); err != nil {
		return err
	}
	var werr error
	setErr := func(err error) {
		if werr == nil {
			werr = err
		}
	}
	// FLAGS first, so that no FETCH below or after shows a keyword the client has not
	// been told of. Keywords announced early, of messages expunged meanwhile, do no harm.
	s.learnPending(sel)
	if sel.newFlags {
		setErr(w.WriteMailboxFlags(sel.mailboxFlags()))
		sel.newFlags = false
	}
	for _, h := range sel.held {
		setErr(w.WriteMessageFlags(h.seq, imap.UID(h.uid), toIMAPFlags(sel.withRecent(h.uid, h.flags)), s.modseq(h.modseq)))
	}
	sel.held = nil
	exists, recent := false, false
	// announce sends the EXISTS and RECENT of messages added to the view so far. It must
	// run before any response that names a sequence number of the grown view: an
	// EXPUNGE, or a FETCH of a message appended and then flagged by another session
	// (issue 16 item 7: "* 33 FETCH" reached a client told of 32 messages).
	announce := func() {
		if exists {
			setErr(w.WriteNumMessages(uint32(len(sel.uids))))
			exists = false
		}
		if recent {
			setErr(w.WriteNumRecent(uint32(len(sel.recent))))
			recent = false
		}
	}
	i := 0
loop:
	for ; i < len(sel.pending); i++ {
		ev := sel.pending[i]
		switch ev.Kind {
		case store.Appended:
			var added []uint32
			for _, uid := range ev.UIDs {
				if uid > sel.maxUID() && !sel.gone[uid] {
					sel.uids = append(sel.uids, uid)
					added = append(added, uid)
					exists = true
				}
				delete(sel.gone, uid)
			}
			if s.takeRecent(sel, added) > 0 {
				recent = true
			}
		case store.Expunged:
			if !allowExpunge {
				break loop
			}
			announce()
			setErr(s.removeExpunged(sel, ev.UIDs, w.WriteExpunge, s.vanishedFunc(w)))
		case store.FlagsChanged:
			if ev.Source == s {
				continue // our own STORE already answered
			}
			msgs := ev.Messages
			if s.condstore {
				// The event may be older than what a FETCH or STORE of this session
				// already showed (they read the store as it is): show the messages as
				// they are now, so that MODSEQ never goes back (RFC 7162 §3.1.4.1).
				msgs = s.current(sel, msgs)
			}
			for _, m := range msgs {
				if seq := sel.seqOf(m.UID); seq > 0 {
					announce()
					setErr(w.WriteMessageFlags(uint32(seq), imap.UID(m.UID), toIMAPFlags(sel.withRecent(m.UID, sel.known(m.Flags))), s.modseq(m.ModSeq)))
				}
			}
		case store.MailboxDeleted:
			s.conn.Bye("selected mailbox was deleted or renamed")
			setErr(errors.New("imapd: selected mailbox deleted"))
		}
	}
	sel.pending = sel.pending[i:]
	announce()
	return werr
}

// current returns msgs as the store has them now, without those gone meanwhile (their
// expunge is pending); on a failure to read, msgs as they are.
func (s *session) current(sel *selected, msgs []store.Message) []store.Message {
	uids := make([]uint32, len(msgs))
	for i, m := range msgs {
		uids[i] = m.UID
	}
	c, cancel := ctx()
	defer cancel()
	cur, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, uids)
	if err != nil {
		s.logErr("poll", err)
		return msgs
	}
	return cur
}

// learnPending records the keywords of the pending flag changes and new messages.
func (s *session) learnPending(sel *selected) {
	var added []uint32
	for _, ev := range sel.pending {
		switch ev.Kind {
		case store.FlagsChanged:
			for _, m := range ev.Messages {
				sel.learn(m.Flags)
			}
		case store.Appended:
			for _, uid := range ev.UIDs {
				if uid > sel.maxUID() && !sel.gone[uid] {
					added = append(added, uid)
				}
			}
		}
	}
	if len(added) == 0 {
		return
	}
	c, cancel := ctx()
	defer cancel()
	msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, added)
	if err != nil {
		// Not fatal: a FETCH may then show the keyword before FLAGS does.
		s.logErr("poll", err)
		return
	}
	for _, m := range msgs {
		sel.learn(m.Flags)
	}
}

// modseq is what a FETCH of flags shows as MODSEQ: nothing (0) unless CONDSTORE is on.
func (s *session) modseq(m uint64) uint64 {
	if !s.condstore {
		return 0
	}
	return m
}

func (s *session) pollSelected(w updateWriter, allowExpunge bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sel == nil {
		return nil
	}
	return s.poll(s.sel, w, allowExpunge)
}

// resolve returns the (seq, uid) pairs of numSet in the client's view, ascending. "*" is
// the last message of the view; "$" is the saved SEARCH result (RFC 5182).
func (sel *selected) resolve(numSet imap.NumSet) (seqs, uids []uint32) {
	if imap.IsSearchRes(numSet) {
		for _, uid := range sel.saved {
			if seq := sel.seqOf(uid); seq > 0 {
				seqs, uids = append(seqs, uint32(seq)), append(uids, uid)
			}
		}
		return seqs, uids
	}
	n := uint32(len(sel.uids))
	switch set := numSet.(type) {
	case imap.SeqSet:
		for seq := uint32(1); seq <= n; seq++ {
			if seqSetContains(set, seq, n) {
				seqs, uids = append(seqs, seq), append(uids, sel.uids[seq-1])
			}
		}
	case imap.UIDSet:
		max := sel.maxUID()
		for i, uid := range sel.uids {
			if uidSetContains(set, uid, max) {
				seqs, uids = append(seqs, uint32(i+1)), append(uids, uid)
			}
		}
	}
	return seqs, uids
}

func seqSetContains(set imap.SeqSet, seq, star uint32) bool {
	return slices.ContainsFunc(set, func(r imap.SeqRange) bool { return inRange(r.Start, r.Stop, seq, star) })
}

// uidSetContains resolves "*" to the highest UID, so "N:*" always includes the last
// message even when N is above it (RFC 3501 §6.4.8).
func uidSetContains(set imap.UIDSet, uid, star uint32) bool {
	return slices.ContainsFunc(set, func(r imap.UIDRange) bool { return inRange(uint32(r.Start), uint32(r.Stop), uid, star) })
}

// inRange reports whether n is in the range a:b of a sequence set, where 0 is "*" (star)
// and the bounds may come in either order (RFC 3501 §9, seq-range).
func inRange(a, b, n, star uint32) bool {
	if a == 0 {
		a = star
	}
	if b == 0 {
		b = star
	}
	if a > b {
		a, b = b, a
	}
	return n >= a && n <= b
}

func (s *session) selected() (*selected, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sel == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "no mailbox selected"}
	}
	return s.sel, nil
}

// expunge answers EXPUNGE, UID EXPUNGE (uidSet) and CLOSE (closing: nothing is written).
func (s *session) expunge(write func(seq uint32) error, vanished func([]uint32) error, uidSet *imap.UIDSet, closing bool) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		if closing {
			return nil // CLOSE after EXAMINE expunges nothing (RFC 3501 §6.4.2)
		}
		return readOnlyErr()
	}
	c, cancel := ctx()
	defer cancel()
	var uids []uint32
	if uidSet != nil {
		_, uids = sel.resolve(*uidSet)
		if len(uids) == 0 {
			return nil
		}
	}
	if _, err := s.user.Expunge(c, sel.mb, uids); err != nil {
		return s.logErr("expunge", err)
	}
	if closing {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushExpunges(sel, write, vanished)
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sel, err := s.selected()
	if err != nil {
		return nil, err
	}
	res, err := s.transfer(sel, numSet, dest, false)
	if err != nil {
		return nil, err
	}
	return copyData(res), nil
}

// transfer copies or moves (COPY, MOVE) the messages of numSet to dest, NO [TRYCREATE]
// when dest does not exist, and lets the Bayesian scorer learn from it.
func (s *session) transfer(sel *selected, numSet imap.NumSet, dest string, move bool) (store.CopyResult, error) {
	_, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return store.CopyResult{}, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "no messages matched"}
	}
	c, cancel := ctx()
	defer cancel()
	op, do := "copy", s.user.Copy
	if move {
		op, do = "move", s.user.Move
		if dst, err := s.user.Mailbox(c, dest); err == nil && dst.ID == sel.mb.ID {
			// MOVE into the selected mailbox (the store refuses to move a file onto
			// itself): as Dovecot does, the messages get new UIDs in the same mailbox
			// and the old ones are expunged, so COPY then remove. A crash in between
			// leaves both copies, never neither.
			do = s.moveWithin
		}
	}
	res, err := do(c, sel.mb, uids, dest)
	if errors.Is(err, store.ErrNoMailbox) {
		return res, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"}
	}
	if err != nil {
		return res, s.logErr(op, err)
	}
	s.maybeTrain(sel.mb, dest, res, move)
	return res, nil
}

// moveWithin moves messages into their own mailbox: copies them, then removes the
// originals that were copied.
func (s *session) moveWithin(c context.Context, mb store.Mailbox, uids []uint32, dest string) (store.CopyResult, error) {
	res, err := s.user.Copy(c, mb, uids, dest)
	if err != nil || len(res.SrcUIDs) == 0 {
		return res, err
	}
	if _, err := s.user.Remove(c, mb, res.SrcUIDs); err != nil {
		return res, err
	}
	return res, nil
}

func copyData(res store.CopyResult) *imap.CopyData {
	d := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.SrcUIDs {
		d.SourceUIDs.AddNum(imap.UID(res.SrcUIDs[i]))
		d.DestUIDs.AddNum(imap.UID(res.DstUIDs[i]))
	}
	return d
}

// move implements RFC 6851: COPYUID first, then one EXPUNGE per moved message, computed
// against this session's view; the events are consumed so the poll does not repeat them.
func (s *session) move(w moveWriter, numSet imap.NumSet, dest string) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return readOnlyErr()
	}
	res, err := s.transfer(sel, numSet, dest, true)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushExpunges(sel, w.WriteExpunge, s.vanishedFunc(w))
}

// --- flags ---

func toIMAPFlags(f []string) []imap.Flag {
	out := make([]imap.Flag, len(f))
	for i, x := range f {
		out[i] = imap.Flag(x)
	}
	return out
}

func fromIMAPFlags(f []imap.Flag) []string {
	out := make([]string, 0, len(f))
	for _, x := range f {
		if strings.EqualFold(string(x), `\Recent`) {
			continue
		}
		out = append(out, string(x))
	}
	return out
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// store answers STORE; with unchangedSince (CONDSTORE, RFC 7162 §3.1.3) messages whose
// modseq is above it are left alone and returned in modified (sequence numbers or UIDs
// as uid says) for the MODIFIED response code.
func (s *session) store(w fetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, unchangedSince *uint64) (modified []uint32, err error) {
	sel, err := s.selected()
	if err != nil {
		return nil, err
	}
	if sel.readOnly {
		return nil, readOnlyErr()
	}
	seqs, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return nil, nil
	}
	op := store.FlagsReplace
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	}
	c, cancel := ctx()
	defer cancel()
	storeFlags := fromIMAPFlags(flags.Flags)
	if unchangedSince != nil {
		// The messages changed since the client's modseq are left out (RFC 7162 §3.1.3);
		// the store tests and sets in one transaction.
		s.condstore = true
		_, mod, err := s.user.SetFlagsUnchangedSince(c, sel.mb, uids, op, storeFlags, *unchangedSince, s)
		if err != nil {
			return nil, s.logErr("store", err)
		}
		if len(mod) > 0 {
			changed := make(map[uint32]bool, len(mod))
			for _, uid := range mod {
				changed[uid] = true
			}
			var keepSeqs, keepUIDs []uint32
			for i, uid := range uids {
				if changed[uid] {
					if _, isUID := numSet.(imap.UIDSet); isUID {
						modified = append(modified, uid)
					} else {
						modified = append(modified, seqs[i])
					}
					continue
				}
				keepSeqs, keepUIDs = append(keepSeqs, seqs[i]), append(keepUIDs, uid)
			}
			seqs, uids = keepSeqs, keepUIDs
		}
	} else if _, err := s.user.SetFlags(c, sel.mb, uids, op, storeFlags, s); err != nil {
		return modified, s.logErr("store", err)
	}
	if len(uids) == 0 {
		return modified, nil
	}
	hold := false
	if op != store.FlagsRemove {
		s.mu.Lock()
		hold = sel.learn(store.NormalizeFlags(fromIMAPFlags(flags.Flags)))
		s.mu.Unlock()
	}
	if flags.Silent && !s.condstore {
		return modified, nil
	}
	msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, uids)
	if err != nil {
		return modified, s.logErr("store", err)
	}
	byUID := map[uint32]store.Message{}
	for _, m := range msgs {
		byUID[m.UID] = m
	}
	for i, uid := range uids {
		m, ok := byUID[uid]
		if !ok {
			continue // expunged meanwhile
		}
		if hold && !flags.Silent {
			s.mu.Lock()
			sel.held = append(sel.held, heldFetch{seq: seqs[i], uid: uid, flags: m.Flags, modseq: m.ModSeq})
			s.mu.Unlock()
			continue
		}
		rw := w.CreateMessage(seqs[i])
		rw.WriteUID(imap.UID(uid))
		if !flags.Silent {
			rw.WriteFlags(toIMAPFlags(sel.withRecent(uid, sel.known(m.Flags))))
		}
		if s.condstore {
			// Even after .SILENT: the client learns its change's modseq (RFC 7162 §3.1.3).
			rw.WriteModSeq(m.ModSeq)
		}
		if err := rw.Close(); err != nil {
			return modified, err
		}
	}
	return modified, nil
}

// maybeTrain feeds messages moved into or out of the Junk folder to Config.Train.
func (s *session) maybeTrain(src store.Mailbox, destName string, res store.CopyResult, move bool) {
	if s.srv.cfg.Train == nil || len(res.DstUIDs) == 0 {
		return
	}
	c, cancel := ctx()
	defer cancel()
	dst, err := s.user.Mailbox(c, destName)
	if err != nil {
		return
	}
	var spam bool
	switch {
	case dst.SpecialUse == store.UseJunk && src.SpecialUse != store.UseJunk:
		spam = true
	case move && src.SpecialUse == store.UseJunk && dst.SpecialUse != store.UseJunk && dst.SpecialUse != store.UseTrash:
		spam = false
	default:
		return
	}
	user := s.user.Name()
	st := s.srv.store
	uids := append([]uint32(nil), res.DstUIDs...)
	go func() {
		s.srv.train <- struct{}{}
		defer func() { <-s.srv.train }()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		u, err := st.Open(c, user)
		if err != nil {
			return
		}
		defer u.Release()
		msgs, err := u.MessagesByUID(c, dst, uids)
		if err != nil {
			return
		}
		for _, m := range msgs {
			f, err := u.Open(dst, m)
			if err != nil {
				continue
			}
			if err := s.srv.cfg.Train(c, user, f, spam); err != nil {
				s.srv.log.Warn("imap junk training", "user", user, "spam", spam, "err", err)
			}
			f.Close()
		}
	}()
}

// Authenticate serves AUTHENTICATE PLAIN; a malformed response (e.g. "AUTHENTICATE
// PLAIN =") is the client's error, not NO [SERVERBUG].

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return saslClientErrs{sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return s.loginAs(identity, username, password) // proxylogin.go
		}
		return s.Login(username, password)
	})}, nil
}

// saslClientErrs answers a response the SASL server cannot read as the client's error.
type saslClientErrs struct{ sasl.Server }

func (w saslClientErrs) Next(resp []byte) ([]byte, bool, error) {
	c, done, err := w.Server.Next(resp)
	var ie *imap.Error
	// Wrong credentials are the session's errAuthFailed, answered NO
	// [AUTHENTICATIONFAILED] as for LOGIN (RFC 9051 §6.2.2, RFC 5530): only what the
	// SASL server could not read is the client's bug.
	if err != nil && !errors.As(err, &ie) && !errors.Is(err, errAuthFailed) {
		err = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Malformed SASL response"}
	}
	return c, done, err
}
