package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
)

// wireCommands are the commands of the authenticated and selected states.
var wireCommands map[string]func(*wireConn, *wire.Command) error

func init() {
	wireCommands = map[string]func(*wireConn, *wire.Command) error{
		"ENABLE": (*wireConn).enable, "SELECT": (*wireConn).selectCmd, "EXAMINE": (*wireConn).selectCmd,
		"CREATE": (*wireConn).create, "DELETE": (*wireConn).mailboxCmd, "SUBSCRIBE": (*wireConn).mailboxCmd,
		"UNSUBSCRIBE": (*wireConn).mailboxCmd, "RENAME": (*wireConn).rename, "LIST": (*wireConn).list,
		"LSUB": (*wireConn).list, "NAMESPACE": (*wireConn).namespace, "STATUS": (*wireConn).status,
		"APPEND": (*wireConn).appendCmd, "IDLE": (*wireConn).idle, "CLOSE": (*wireConn).unselect,
		"UNSELECT": (*wireConn).unselect, "EXPUNGE": (*wireConn).expunge, "SEARCH": (*wireConn).search,
		"FETCH": (*wireConn).fetch, "STORE": (*wireConn).store, "COPY": (*wireConn).copyMove,
		"MOVE": (*wireConn).copyMove, "SORT": (*wireConn).sortCmd, "THREAD": (*wireConn).thread,
		"GETQUOTA": (*wireConn).quota, "GETQUOTAROOT": (*wireConn).quota, "SETQUOTA": (*wireConn).quota,
		"COMPRESS": (*wireConn).compress,
	}
}

// mailboxName decodes a mailbox argument: modified UTF-7 from an IMAP4rev1 client, UTF-8
// from one that enabled IMAP4rev2 or UTF8=ACCEPT; INBOX in any case is INBOX.
func (c *wireConn) mailboxName(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	en := c.EnabledCaps()
	if en.Has(imap.CapIMAP4rev2) || en.Has(imap.CapUTF8Accept) {
		return name, nil
	}
	dec, err := wire.DecodeMailbox(name)
	if err != nil {
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "Mailbox name is not valid modified UTF-7"}
	}
	return dec, nil
}

func (c *wireConn) enable(cmd *wire.Command) error {
	var done []string
	c.mu.Lock()
	for _, cp := range cmd.Caps {
		switch cp {
		case "IMAP4REV2":
			c.enabled[imap.CapIMAP4rev2] = struct{}{}
			done = append(done, "IMAP4rev2")
		case "UTF8=ACCEPT":
			c.enabled[imap.CapUTF8Accept] = struct{}{}
			done = append(done, "UTF8=ACCEPT")
		case "CONDSTORE":
			c.sess.condstore = true
			done = append(done, "CONDSTORE")
		case "QRESYNC": // implies CONDSTORE (RFC 7162 §3.2.3)
			c.sess.condstore, c.sess.qresync = true, true
			done = append(done, "QRESYNC")
		}
	}
	c.mu.Unlock()
	if err := c.untagged(func(e *enc) *enc { return e.raw("ENABLED").raw(prefixSP(done)) }); err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}

func prefixSP(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return " " + strings.Join(l, " ")
}

func (c *wireConn) selectCmd(cmd *wire.Command) error {
	if cmd.Select.QResync != nil && !c.sess.qresync {
		// RFC 7162 §3.2.5: only after ENABLE QRESYNC.
		return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "ENABLE QRESYNC first")
	}
	if cmd.Select.CondStore {
		c.sess.condstore = true
	}
	// A name that is not modified UTF-7 is refused as a malformed command, before the
	// selected mailbox is closed.
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if c.state == stateSelected {
		c.sess.Unselect()
		c.state = stateAuth
		if err := c.untagged(func(e *enc) *enc { return e.status("OK", "CLOSED", "Previous mailbox is now closed") }); err != nil {
			return err
		}
	}
	readOnly := cmd.Name == "EXAMINE"
	data, err := c.sess.Select(name, &imap.SelectOptions{ReadOnly: readOnly})
	if err != nil {
		return c.replyErr(cmd, err)
	}
	rev1 := c.sess.rev1()
	err = c.write(func(e *enc) error {
		e.raw("* ").num(data.NumMessages).raw(" EXISTS\r\n")
		if rev1 {
			e.raw("* ").num(data.NumRecent).raw(" RECENT\r\n")
			if data.FirstUnseenSeqNum != 0 {
				e.raw("* OK [UNSEEN ").num(data.FirstUnseenSeqNum).raw("] First unseen message\r\n")
			}
		}
		e.raw("* OK [UIDVALIDITY ").num(data.UIDValidity).raw("] UIDs valid\r\n")
		e.raw("* OK [UIDNEXT ").num(uint32(data.UIDNext)).raw("] Predicted next UID\r\n")
		e.raw("* OK [HIGHESTMODSEQ ").num64(int64(data.HighestModSeq)).raw("] Highest\r\n")
		e.raw("* FLAGS ").flags(data.Flags).raw("\r\n")
		return e.raw("* OK [PERMANENTFLAGS ").flags(data.PermanentFlags).raw("] Flags permitted").crlf()
	})
	if err != nil {
		return err
	}
	c.state = stateSelected
	if q := cmd.Select.QResync; q != nil && q.UIDValidity == data.UIDValidity {
		if err := c.resync(q); err != nil {
			return c.replyErr(cmd, err)
		}
	}
	code := imap.ResponseCode("READ-WRITE")
	if readOnly {
		code = "READ-ONLY"
	}
	return c.tagged(cmd.Tag, "OK", code, cmd.Name+" completed")
}

func (c *wireConn) create(cmd *wire.Command) error {
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	var opts *imap.CreateOptions
	if len(cmd.SpecialUse) > 0 {
		opts = &imap.CreateOptions{}
		for _, u := range cmd.SpecialUse {
			opts.SpecialUse = append(opts.SpecialUse, imap.MailboxAttr(u))
		}
	}
	return c.reply(cmd, c.sess.Create(name, opts), "")
}

func (c *wireConn) mailboxCmd(cmd *wire.Command) error {
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	switch cmd.Name {
	case "DELETE":
		err = c.sess.Delete(name)
	case "SUBSCRIBE":
		err = c.sess.Subscribe(name)
	case "UNSUBSCRIBE":
		err = c.sess.Unsubscribe(name)
	}
	return c.reply(cmd, err, "")
}

func (c *wireConn) rename(cmd *wire.Command) error {
	from, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	to, err := c.mailboxName(cmd.NewName)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	return c.reply(cmd, c.sess.Rename(from, to, nil), "")
}

func (c *wireConn) namespace(cmd *wire.Command) error {
	if err := c.untagged(func(e *enc) *enc { return e.raw(`NAMESPACE (("" "/")) NIL NIL`) }); err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}

func statusOptions(items []string) *imap.StatusOptions {
	o := &imap.StatusOptions{}
	for _, it := range items {
		switch it {
		case "MESSAGES":
			o.NumMessages = true
		case "RECENT":
			o.NumRecent = true
		case "UIDNEXT":
			o.UIDNext = true
		case "UIDVALIDITY":
			o.UIDValidity = true
		case "UNSEEN":
			o.NumUnseen = true
		case "DELETED":
			o.NumDeleted = true
		case "SIZE":
			o.Size = true
		case "APPENDLIMIT":
			o.AppendLimit = true
		case "HIGHESTMODSEQ":
			o.HighestModSeq = true
		}
	}
	return o
}

func (e *enc) statusData(d *imap.StatusData, o *imap.StatusOptions) *enc {
	e.raw("STATUS ").mailbox(d.Mailbox).raw(" (")
	var items []string
	add := func(name string, v uint64) { items = append(items, fmt.Sprintf("%s %d", name, v)) }
	if o.NumMessages && d.NumMessages != nil {
		add("MESSAGES", uint64(*d.NumMessages))
	}
	if o.UIDNext {
		add("UIDNEXT", uint64(d.UIDNext))
	}
	if o.UIDValidity {
		add("UIDVALIDITY", uint64(d.UIDValidity))
	}
	if o.NumUnseen && d.NumUnseen != nil {
		add("UNSEEN", uint64(*d.NumUnseen))
	}
	if o.NumDeleted && d.NumDeleted != nil {
		add("DELETED", uint64(*d.NumDeleted))
	}
	if o.Size && d.Size != nil {
		add("SIZE", uint64(*d.Size))
	}
	if o.AppendLimit && d.AppendLimit != nil {
		add("APPENDLIMIT", uint64(*d.AppendLimit))
	}
	if o.NumRecent && d.NumRecent != nil {
		add("RECENT", uint64(*d.NumRecent))
	}
	if o.HighestModSeq {
		add("HIGHESTMODSEQ", d.HighestModSeq)
	}
	return e.raw(strings.Join(items, " ")).raw(")")
}

func (c *wireConn) status(cmd *wire.Command) error {
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	o := statusOptions(cmd.Status)
	d, err := c.sess.Status(name, o)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if err := c.untagged(func(e *enc) *enc { return e.statusData(d, o) }); err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}

// wireList writes LIST or LSUB responses, and LIST-STATUS's STATUS after each.
type wireList struct {
	c      *wireConn
	lsub   bool
	status *imap.StatusOptions
}

func (w *wireList) WriteList(d *imap.ListData) error {
	attrs := d.Attrs
	name := "LIST"
	if w.lsub {
		name = "LSUB"
		// RFC 3501 §6.3.9: a parent that is not subscribed but has a subscribed child
		// is listed \Noselect.
		if d.ChildInfo != nil && d.ChildInfo.Subscribed && !hasAttr(attrs, imap.MailboxAttrSubscribed) && !hasAttr(attrs, imap.MailboxAttrNoSelect) {
			attrs = append(append([]imap.MailboxAttr(nil), attrs...), imap.MailboxAttrNoSelect)
		}
	}
	err := w.c.untagged(func(e *enc) *enc {
		e.raw(name).raw(" (")
		for i, a := range attrs {
			if i > 0 {
				e.sp()
			}
			e.raw(string(a))
		}
		e.raw(") ")
		if d.Delim == 0 {
			e.raw("NIL")
		} else {
			e.str(string(d.Delim))
		}
		e.sp().mailbox(d.Mailbox)
		if !w.lsub && d.ChildInfo != nil {
			e.raw(" (CHILDINFO (")
			if d.ChildInfo.Subscribed {
				e.raw(`"SUBSCRIBED"`)
			}
			e.raw("))")
		}
		return e
	})
	if err != nil || w.lsub || w.status == nil || d.Status == nil {
		return err
	}
	return w.c.untagged(func(e *enc) *enc { return e.statusData(d.Status, w.status) })
}

func (c *wireConn) list(cmd *wire.Command) error {
	l := cmd.List
	opts := &imap.ListOptions{}
	w := &wireList{c: c, lsub: cmd.Name == "LSUB"}
	if w.lsub {
		opts.SelectSubscribed, opts.SelectRecursiveMatch = true, true
	}
	for _, o := range l.Select {
		switch o {
		case "SUBSCRIBED":
			opts.SelectSubscribed = true
		case "REMOTE":
			opts.SelectRemote = true
		case "RECURSIVEMATCH":
			opts.SelectRecursiveMatch = true
		case "SPECIAL-USE":
			opts.SelectSpecialUse = true
		default:
			return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "Unknown LIST select option")
		}
	}
	for _, o := range l.Return {
		switch o {
		case "SUBSCRIBED":
			opts.ReturnSubscribed = true
		case "CHILDREN":
			opts.ReturnChildren = true
		case "SPECIAL-USE":
			opts.ReturnSpecialUse = true
		case "STATUS":
			opts.ReturnStatus = statusOptions(l.ReturnStatus)
			w.status = opts.ReturnStatus
		default:
			return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "Unknown LIST return option")
		}
	}
	if opts.SelectRecursiveMatch && !opts.SelectSubscribed {
		return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "RECURSIVEMATCH requires SUBSCRIBED")
	}
	// Patterns that are not modified UTF-7 are taken as they are: they match nothing
	// rather than fail the command (imaptest's atoms: LIST with every atom character);
	// a reference must be a mailbox name.
	ref, err := c.mailboxName(l.Ref)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	var patterns []string
	for _, p := range l.Patterns {
		if d, err := c.mailboxName(p); err == nil {
			p = d
		}
		if p != "" || len(l.Patterns) == 1 {
			patterns = append(patterns, p)
		}
	}
	if l.Extended && len(patterns) == 0 {
		return c.reply(cmd, nil, "")
	}
	return c.reply(cmd, c.sess.list(w, ref, patterns, opts), "")
}

func (c *wireConn) appendCmd(cmd *wire.Command) error {
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		// Refused before the client sends the message.
		ie := err.(*imap.Error)
		perr := c.p.RefuseAppend(&wire.Error{Kind: wire.No, Code: string(ie.Code), Text: ie.Text})
		var we *wire.Error
		if errors.As(perr, &we) && !we.Fatal {
			return c.replyErr(cmd, err)
		}
		return perr
	}
	// MULTIAPPEND (RFC 3502): each message is stored as it arrives; if one fails, those
	// stored before it are removed, so the command appends all or none.
	var uidValidity uint32
	var uids []uint32
	undo := func() {
		if len(uids) == 0 {
			return
		}
		if err := c.sess.removeAppended(name, uids); err != nil {
			c.srv.rlog.Error("imap append: undo", "err", err)
		}
	}
	// refused answers the parser's refusal of the rest of the command.
	refused := func(perr error) error {
		if err == nil {
			undo()
		}
		var we *wire.Error
		if errors.As(perr, &we) {
			if we.Fatal {
				c.Bye(we.Text)
				return perr
			}
			typ := "BAD"
			if we.Kind == wire.No {
				typ = "NO"
			}
			return c.tagged(cmd.Tag, typ, imap.ResponseCode(we.Code), we.Text)
		}
		return perr
	}
	for {
		m, perr := c.p.NextAppend()
		if perr != nil {
			return refused(perr)
		}
		if m == nil {
			break
		}
		if err != nil {
			// An earlier message failed: the rest is read, not stored.
			if m.Catenate {
				if perr := c.p.AbortAppend(); perr != nil {
					return perr
				}
			} else {
				io.Copy(io.Discard, m.Body)
			}
			continue
		}
		opts := &imap.AppendOptions{Time: m.Date}
		for _, f := range m.Flags {
			opts.Flags = append(opts.Flags, imap.Flag(f))
		}
		var res *imap.AppendData
		if m.Catenate { // RFC 4469 (catenate.go)
			msg, release, perr, cerr := c.catenate(name)
			if perr != nil {
				return refused(perr)
			}
			if err = cerr; err == nil {
				res, err = c.appendHeld(name, msg, opts, release)
			}
			if err != nil {
				undo()
				continue
			}
		} else if m.Binary { // literal8: binary entities stored in base64 (binary.go)
			var msg []byte
			var release func()
			if msg, release, err = c.sess.binaryAppend(m.Body, m.Size); err == nil {
				res, err = c.appendHeld(name, literal{bytes.NewReader(msg), int64(len(msg))}, opts, release)
			}
		} else {
			res, err = c.sess.Append(name, literal{m.Body, m.Size}, opts)
		}
		if m.Body != nil {
			io.Copy(io.Discard, m.Body) // what the store did not read, on an error
		}
		if err != nil {
			undo()
			continue
		}
		uidValidity = res.UIDValidity
		uids = append(uids, uint32(res.UID))
	}
	if err != nil {
		return c.replyErr(cmd, err)
	}
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return c.reply(cmd, nil, imap.ResponseCode(fmt.Sprintf("APPENDUID %d %s", uidValidity, set.String())))
}

// appendHeld stores msg, which holds memory of the server's budget or a spool file, and
// gives them back with release: deferred, so that a panic in the store (recovered by the
// connection, which it ends) does not keep a share of fetch_memory until the server
// restarts.
func (c *wireConn) appendHeld(name string, msg literal, opts *imap.AppendOptions, release func()) (*imap.AppendData, error) {
	defer release()
	if testHookHeld != nil {
		testHookHeld("append")
	}
	return c.sess.Append(name, msg, opts)
}

// literal is an APPEND message as imap.LiteralReader.
type literal struct {
	io.Reader
	size int64
}

func (l literal) Size() int64 { return l.size }

// wireUpdates writes a poll's unsolicited responses, one at a time under the write lock.
type wireUpdates struct{ c *wireConn }

func (c *wireConn) updates() wireUpdates { return wireUpdates{c} }

func (u wireUpdates) WriteExpunge(seq uint32) error {
	return u.c.untagged(func(e *enc) *enc { return e.num(seq).raw(" EXPUNGE") })
}

// WriteVanished writes VANISHED [(EARLIER)] (RFC 7162 §3.2.10, §3.2.6).
func (u wireUpdates) WriteVanished(uids []uint32, earlier bool) error {
	if len(uids) == 0 {
		return nil
	}
	return u.c.untagged(func(e *enc) *enc {
		e.raw("VANISHED ")
		if earlier {
			e.raw("(EARLIER) ")
		}
		return e.numSet(uids)
	})
}

func (u wireUpdates) WriteNumMessages(n uint32) error {
	return u.c.untagged(func(e *enc) *enc { return e.num(n).raw(" EXISTS") })
}

func (u wireUpdates) WriteNumRecent(n uint32) error {
	if !u.c.sess.rev1() {
		return nil
	}
	return u.c.untagged(func(e *enc) *enc { return e.num(n).raw(" RECENT") })
}

func (u wireUpdates) WriteMailboxFlags(flags []imap.Flag) error {
	return u.c.untagged(func(e *enc) *enc { return e.raw("FLAGS ").flags(flags) })
}

func (u wireUpdates) WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag, modseq uint64) error {
	return u.c.untagged(func(e *enc) *enc {
		e.num(seq).raw(" FETCH (UID ").num(uint32(uid)).raw(" FLAGS ").flags(flags)
		if modseq > 0 {
			e.raw(" MODSEQ (").num64(int64(modseq)).raw(")")
		}
		return e.raw(")")
	})
}

// idle answers IDLE (RFC 2177): updates as they come until the client sends DONE.
func (c *wireConn) idle(cmd *wire.Command) error {
	if err := c.write(func(e *enc) error { return e.raw("+ idling").crlf() }); err != nil {
		return err
	}
	c.NetConn().SetReadDeadline(time.Now().Add(wireIdleTimeout))
	line, err := c.idleWait() // idle.go
	if err != nil {
		return err
	}
	if !strings.EqualFold(line, "DONE") {
		return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "Expected DONE to end IDLE")
	}
	return c.reply(cmd, nil, "")
}

func (c *wireConn) needSelected(cmd *wire.Command) (bool, error) {
	if c.state != stateSelected {
		return false, c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "No mailbox selected")
	}
	return true, nil
}

func (c *wireConn) unselect(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	if cmd.Name == "CLOSE" {
		if err := c.sess.expunge(nil, nil, nil, true); err != nil {
			return c.replyErr(cmd, err)
		}
	}
	c.sess.Unselect()
	c.state = stateAuth
	return c.tagged(cmd.Tag, "OK", "", cmd.Name+" completed")
}

func (c *wireConn) expunge(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	var set *imap.UIDSet
	if cmd.UID {
		s := uidSet(cmd.Set)
		set = &s
	}
	u := c.updates()
	return c.reply(cmd, c.sess.expunge(u.WriteExpunge, c.sess.vanishedFunc(u), set, false), "")
}

// numSet converts a wire sequence set for the session: UIDs for a UID command.
func numSet(s wire.NumSet, uid bool) imap.NumSet {
	if s.SearchRes {
		return imap.SearchRes()
	}
	if uid {
		return uidSet(s)
	}
	var out imap.SeqSet
	for _, r := range s.Ranges {
		out = append(out, imap.SeqRange{Start: r.Start, Stop: r.Stop})
	}
	return out
}

func uidSet(s wire.NumSet) imap.UIDSet {
	if s.SearchRes {
		return imap.SearchRes()
	}
	var out imap.UIDSet
	for _, r := range s.Ranges {
		out = append(out, imap.UIDRange{Start: imap.UID(r.Start), Stop: imap.UID(r.Stop)})
	}
	return out
}

var searchFlags = map[string]imap.Flag{
	"ANSWERED": imap.FlagAnswered, "DELETED": imap.FlagDeleted, "DRAFT": imap.FlagDraft,
	"FLAGGED": imap.FlagFlagged, "SEEN": imap.FlagSeen, "RECENT": `\Recent`,
}

// criteria converts a search key into the session's criteria.
func criteria(k wire.SearchKey) (imap.SearchCriteria, error) {
	var cr imap.SearchCriteria
	switch k.Op {
	case "AND":
		for _, sub := range k.Keys {
			s, err := criteria(sub)
			if err != nil {
				return cr, err
			}
			cr.And(&s)
			if s.ModSeq != nil && (cr.ModSeq == nil || s.ModSeq.ModSeq > cr.ModSeq.ModSeq) {
				cr.ModSeq = s.ModSeq // And leaves it out
			}
		}
	case "ALL":
	case "SEQSET":
		if k.Set.SearchRes {
			cr.UID = append(cr.UID, imap.SearchRes())
		} else {
			cr.SeqNum = append(cr.SeqNum, numSet(k.Set, false).(imap.SeqSet))
		}
	case "UID":
		cr.UID = append(cr.UID, uidSet(k.Set))
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "RECENT":
		cr.Flag = append(cr.Flag, searchFlags[k.Op])
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		cr.NotFlag = append(cr.NotFlag, searchFlags[strings.TrimPrefix(k.Op, "UN")])
	case "NEW":
		cr.Flag = append(cr.Flag, `\Recent`)
		cr.NotFlag = append(cr.NotFlag, imap.FlagSeen)
	case "OLD":
		cr.NotFlag = append(cr.NotFlag, `\Recent`)
	case "KEYWORD":
		cr.Flag = append(cr.Flag, imap.Flag(k.Str))
	case "UNKEYWORD":
		cr.NotFlag = append(cr.NotFlag, imap.Flag(k.Str))
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		key := k.Op[:1] + strings.ToLower(k.Op[1:])
		cr.Header = append(cr.Header, imap.SearchCriteriaHeaderField{Key: key, Value: k.Str})
	case "HEADER":
		cr.Header = append(cr.Header, imap.SearchCriteriaHeaderField{Key: k.Str, Value: k.Value})
	case "SINCE":
		cr.Since = k.Date
	case "BEFORE":
		cr.Before = k.Date
	case "ON":
		cr.Since, cr.Before = k.Date, k.Date.Add(24*time.Hour)
	case "SENTSINCE":
		cr.SentSince = k.Date
	case "SENTBEFORE":
		cr.SentBefore = k.Date
	case "SENTON":
		cr.SentSince, cr.SentBefore = k.Date, k.Date.Add(24*time.Hour)
	case "BODY":
		cr.Body = append(cr.Body, k.Str)
	case "TEXT":
		cr.Text = append(cr.Text, k.Str)
	case "LARGER":
		cr.Larger = int64(k.Num)
	case "SMALLER":
		cr.Smaller = int64(k.Num)
	case "NOT":
		s, err := criteria(k.Keys[0])
		if err != nil {
			return cr, err
		}
		cr.Not = append(cr.Not, s)
	case "OR":
		a, err := criteria(k.Keys[0])
		if err != nil {
			return cr, err
		}
		b, err := criteria(k.Keys[1])
		if err != nil {
			return cr, err
		}
		cr.Or = append(cr.Or, [2]imap.SearchCriteria{a, b})
	case "MODSEQ":
		cr.ModSeq = &imap.SearchCriteriaModSeq{ModSeq: k.Num}
	case "OLDER", "YOUNGER":
		cr.Or = append(cr.Or, within(k.Op, k.Num, time.Now()))
	default:
		return cr, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "search key " + k.Op + " is not offered"}
	}
	return cr, nil
}

func (c *wireConn) search(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	s := cmd.Search
	if cs := strings.ToUpper(s.Charset); cs != "" && cs != "US-ASCII" && cs != "UTF-8" {
		return c.tagged(cmd.Tag, "NO", "BADCHARSET (US-ASCII UTF-8)", "Only US-ASCII and UTF-8 are supported")
	}
	cr, err := criteria(s.Key)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	opts := &imap.SearchOptions{}
	for _, r := range s.Return {
		switch r {
		case "MIN":
			opts.ReturnMin = true
		case "MAX":
			opts.ReturnMax = true
		case "ALL":
			opts.ReturnAll = true
		case "COUNT":
			opts.ReturnCount = true
		case "SAVE":
			opts.ReturnSave = true
		}
	}
	if !opts.ReturnMin && !opts.ReturnMax && !opts.ReturnAll && !opts.ReturnCount {
		opts.ReturnAll = true
	}
	kind := numSeq
	if cmd.UID {
		kind = numUID
	}
	was := c.sess.condstore
	withModSeq := hasModSeqKey(s.Key)
	if withModSeq {
		c.sess.condstore = true
	}
	data, modseqs, err := c.sess.search(kind, &cr, opts)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if err := c.condstoreOn(was); err != nil {
		return err
	}
	// RFC 7162 §3.1.5: a search on MODSEQ answers the highest modseq of what it returns
	// (with MIN or MAX alone, of those messages).
	var highest uint64
	if withModSeq && len(modseqs) > 0 {
		if opts.ReturnAll || opts.ReturnCount || !esearchWanted(s.Return) {
			highest = slices.Max(modseqs)
		} else {
			if opts.ReturnMin {
				highest = max(highest, modseqs[0])
			}
			if opts.ReturnMax {
				highest = max(highest, modseqs[len(modseqs)-1])
			}
		}
	}
	nums := searchNums(data.All)
	esearch := s.Return != nil || c.EnabledCaps().Has(imap.CapIMAP4rev2)
	// RETURN (SAVE) alone answers nothing (RFC 5182 §2.4).
	saveOnly := opts.ReturnSave && len(s.Return) == 1
	if !saveOnly {
		err = c.untagged(func(e *enc) *enc {
			if !esearch {
				e.raw("SEARCH")
				for _, n := range nums {
					e.sp().num(n)
				}
				if highest > 0 {
					e.raw(" (MODSEQ ").num64(int64(highest)).raw(")")
				}
				return e
			}
			e.raw(`ESEARCH (TAG `).str(cmd.Tag).raw(")")
			if cmd.UID {
				e.raw(" UID")
			}
			if opts.ReturnMin && data.Min > 0 {
				e.raw(" MIN ").num(data.Min)
			}
			if opts.ReturnMax && data.Max > 0 {
				e.raw(" MAX ").num(data.Max)
			}
			if opts.ReturnAll && len(nums) > 0 {
				e.raw(" ALL ").numSet(nums)
			}
			if opts.ReturnCount {
				e.raw(" COUNT ").num(data.Count)
			}
			if highest > 0 {
				e.raw(" MODSEQ ").num64(int64(highest))
			}
			return e
		})
		if err != nil {
			return err
		}
	}
	return c.reply(cmd, nil, "")
}

func esearchWanted(ret []string) bool { return ret != nil }

func hasModSeqKey(k wire.SearchKey) bool {
	if k.Op == "MODSEQ" {
		return true
	}
	for _, sub := range k.Keys {
		if hasModSeqKey(sub) {
			return true
		}
	}
	return false
}

// condstoreOn sends HIGHESTMODSEQ when a command (not ENABLE or SELECT) has just turned
// CONDSTORE on in the selected state (RFC 7162 §3.1).
func (c *wireConn) condstoreOn(was bool) error {
	if was || !c.sess.condstore || c.state != stateSelected {
		return nil
	}
	h, err := c.sess.highestModSeq()
	if err != nil {
		return nil
	}
	return c.untagged(func(e *enc) *enc {
		return e.raw("OK [HIGHESTMODSEQ ").num64(int64(h)).raw("] Highest")
	})
}

func searchNums(set imap.NumSet) []uint32 {
	switch s := set.(type) {
	case imap.SeqSet:
		n, _ := s.Nums()
		return n
	case imap.UIDSet:
		u, _ := s.Nums()
		out := make([]uint32, len(u))
		for i, x := range u {
			out[i] = uint32(x)
		}
		return out
	}
	return nil
}

// fetchOptions converts fetch attributes; names says how to answer the obsolete RFC822
// items, which are body sections under other names.
func fetchOptions(f *wire.Fetch, uid bool) (*imap.FetchOptions, *wireFetch, error) {
	o := &imap.FetchOptions{UID: uid}
	wf := &wireFetch{names: map[*imap.FetchItemBodySection]string{}}
	for _, a := range f.Atts {
		switch a.Name {
		case "ENVELOPE":
			o.Envelope = true
		case "FLAGS":
			o.Flags = true
		case "INTERNALDATE":
			o.InternalDate = true
		case "RFC822.SIZE":
			o.RFC822Size = true
		case "UID":
			o.UID = true
		case "BODY":
			wf.body = true
			if o.BodyStructure == nil {
				o.BodyStructure = &imap.FetchItemBodyStructure{}
			}
		case "BODYSTRUCTURE":
			wf.bodyStructure = true
			o.BodyStructure = &imap.FetchItemBodyStructure{Extended: true}
		case "RFC822", "RFC822.HEADER", "RFC822.TEXT":
			bs := &imap.FetchItemBodySection{}
			switch a.Name {
			case "RFC822.HEADER":
				bs.Specifier, bs.Peek = imap.PartSpecifierHeader, true
			case "RFC822.TEXT":
				bs.Specifier = imap.PartSpecifierText
			}
			wf.names[bs] = a.Name
			o.BodySection = append(o.BodySection, bs)
		case "BODY[]", "BODY.PEEK[]":
			bs := &imap.FetchItemBodySection{Part: a.Section.Part, Peek: a.Name == "BODY.PEEK[]"}
			switch a.Section.Specifier {
			case "HEADER":
				bs.Specifier = imap.PartSpecifierHeader
			case "HEADER.FIELDS":
				bs.Specifier, bs.HeaderFields = imap.PartSpecifierHeader, a.Section.Fields
			case "HEADER.FIELDS.NOT":
				bs.Specifier, bs.HeaderFieldsNot = imap.PartSpecifierHeader, a.Section.Fields
			case "TEXT":
				bs.Specifier = imap.PartSpecifierText
			case "MIME":
				bs.Specifier = imap.PartSpecifierMIME
			}
			if p := a.Partial; p != nil {
				bs.Partial = &imap.SectionPartial{Offset: int64(p.Offset), Size: int64(p.Count)}
			}
			o.BodySection = append(o.BodySection, bs)
		case "BINARY[]", "BINARY.PEEK[]":
			bs := &imap.FetchItemBinarySection{Part: a.Section.Part, Peek: a.Name == "BINARY.PEEK[]"}
			if p := a.Partial; p != nil {
				bs.Partial = &imap.SectionPartial{Offset: int64(p.Offset), Size: int64(p.Count)}
			}
			o.BinarySection = append(o.BinarySection, bs)
		case "BINARY.SIZE[]":
			o.BinarySectionSize = append(o.BinarySectionSize, &imap.FetchItemBinarySectionSize{Part: a.Section.Part})
		case "MODSEQ":
			o.ModSeq = true
		default:
			return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "fetch attribute " + a.Name + " is not offered"}
		}
	}
	o.ChangedSince = f.ChangedSince
	return o, wf, nil
}

func (c *wireConn) fetch(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	o, wf, err := fetchOptions(cmd.Fetch, cmd.UID)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	wf.c = c
	if cmd.Fetch.Vanished {
		// RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE first.
		if !c.sess.qresync {
			return c.tagged(cmd.Tag, "BAD", imap.ResponseCodeClientBug, "ENABLE QRESYNC first")
		}
		if err := c.vanishedEarlier(cmd.Fetch.ChangedSince, uidSet(cmd.Fetch.Set)); err != nil {
			return c.replyErr(cmd, err)
		}
	}
	was := c.sess.condstore
	if err := c.sess.fetch(wf, numSet(cmd.Fetch.Set, cmd.UID), o); err != nil {
		return c.replyErr(cmd, err)
	}
	if err := c.condstoreOn(was); err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}

func (c *wireConn) store(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	st := cmd.Store
	flags := &imap.StoreFlags{Silent: st.Silent}
	switch st.Op {
	case '+':
		flags.Op = imap.StoreFlagsAdd
	case '-':
		flags.Op = imap.StoreFlagsDel
	default:
		flags.Op = imap.StoreFlagsSet
	}
	for _, f := range st.Flags {
		flags.Flags = append(flags.Flags, imap.Flag(f))
	}
	wf := &wireFetch{c: c}
	was := c.sess.condstore
	modified, err := c.sess.store(wf, numSet(st.Set, cmd.UID), flags, st.UnchangedSince)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if err := c.condstoreOn(was); err != nil {
		return err
	}
	if len(modified) > 0 {
		// RFC 7162 §3.1.3: the messages left alone, for the client to look at again.
		var set imap.SeqSet
		set.AddNum(modified...)
		return c.reply(cmd, nil, imap.ResponseCode("MODIFIED "+set.String()))
	}
	return c.reply(cmd, nil, "")
}

// wireMove writes MOVE's COPYUID and EXPUNGE responses.
type wireMove struct{ c *wireConn }

func (m wireMove) WriteCopyData(d *imap.CopyData) error {
	return m.c.untagged(func(e *enc) *enc { return e.status("OK", copyUID(d), "Moved") })
}

func (m wireMove) WriteExpunge(seq uint32) error { return m.c.updates().WriteExpunge(seq) }

func (m wireMove) WriteVanished(uids []uint32, earlier bool) error {
	return m.c.updates().WriteVanished(uids, earlier)
}

func copyUID(d *imap.CopyData) imap.ResponseCode {
	return imap.ResponseCode(fmt.Sprintf("COPYUID %d %s %s", d.UIDValidity, d.SourceUIDs.String(), d.DestUIDs.String()))
}

func (c *wireConn) copyMove(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	dest, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	set := numSet(cmd.Set, cmd.UID)
	if cmd.Name == "MOVE" {
		return c.reply(cmd, c.sess.move(wireMove{c}, set, dest), "")
	}
	d, err := c.sess.Copy(set, dest)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	return c.reply(cmd, nil, copyUID(d))
}

// wireFetch writes FETCH responses (and STORE's): one message at a time, the write lock
// held from "* n FETCH (" to ")".
type wireFetch struct {
	c                   *wireConn
	body, bodyStructure bool
	names               map[*imap.FetchItemBodySection]string
}

func (f *wireFetch) CreateMessage(seq uint32) msgWriter {
	f.c.wmu.Lock()
	f.c.NetConn().SetWriteDeadline(time.Now().Add(wireWriteTimeout))
	e := f.c.enc()
	e.raw("* ").num(seq).raw(" FETCH (")
	return &wireMsg{f: f, e: e}
}

type wireMsg struct {
	f      *wireFetch
	e      *enc
	items  bool
	closed bool
}

func (m *wireMsg) item(name string) *enc {
	if m.items {
		m.e.sp()
	}
	m.items = true
	return m.e.raw(name)
}

func (m *wireMsg) WriteUID(uid imap.UID) { m.item("UID ").num(uint32(uid)) }

func (m *wireMsg) WriteFlags(flags []imap.Flag) { m.item("FLAGS ").flags(flags) }

func (m *wireMsg) WriteRFC822Size(n int64) { m.item("RFC822.SIZE ").num64(n) }

func (m *wireMsg) WriteInternalDate(t time.Time) { m.item("INTERNALDATE ").dateTime(t) }

func sectionPart(part []int) string {
	s := make([]string, len(part))
	for i, p := range part {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ".")
}

func (m *wireMsg) WriteBodySection(bs *imap.FetchItemBodySection, size int64) io.WriteCloser {
	if name, ok := m.f.names[bs]; ok {
		m.item(name)
	} else {
		e := m.item("BODY[").raw(sectionPart(bs.Part))
		if len(bs.Part) > 0 && bs.Specifier != imap.PartSpecifierNone {
			e.raw(".")
		}
		e.raw(string(bs.Specifier))
		fields := bs.HeaderFields
		if len(fields) > 0 {
			e.raw(".FIELDS")
		} else if fields = bs.HeaderFieldsNot; len(fields) > 0 {
			e.raw(".FIELDS.NOT")
		}
		if len(fields) > 0 {
			e.raw(" (")
			for i, f := range fields {
				if i > 0 {
					e.sp()
				}
				e.str(f)
			}
			e.raw(")")
		}
		e.raw("]")
		if bs.Partial != nil {
			e.raw("<").num64(bs.Partial.Offset).raw(">")
		}
	}
	m.e.raw(" {").num64(size).raw("}\r\n")
	return &literalWriter{e: m.e, left: size}
}

func (m *wireMsg) WriteBinarySection(bs *imap.FetchItemBinarySection, size int64) io.WriteCloser {
	e := m.item("BINARY[").raw(sectionPart(bs.Part)).raw("]")
	if bs.Partial != nil {
		e.raw("<").num64(bs.Partial.Offset).raw(">")
	}
	e.raw(" ~{").num64(size).raw("}\r\n")
	return &literalWriter{e: m.e, left: size}
}

func (m *wireMsg) WriteBinarySectionSize(bs *imap.FetchItemBinarySectionSize, size uint32) {
	m.item("BINARY.SIZE[").raw(sectionPart(bs.Part)).raw("] ").num(size)
}

func (m *wireMsg) WriteEnvelope(env *envelope) { m.item("ENVELOPE ").envelope(env) }

func (m *wireMsg) WriteModSeq(modseq uint64) { m.item("MODSEQ (").num64(int64(modseq)).raw(")") }

func (m *wireMsg) WriteBodyStructure(bs imap.BodyStructure) {
	if m.f.body {
		m.item("BODY ").bodyStructure(bs, false)
	}
	if m.f.bodyStructure {
		m.item("BODYSTRUCTURE ").bodyStructure(bs, true)
	}
}

func (m *wireMsg) Close() error {
	if m.closed {
		return errors.New("imapd: FETCH response closed twice")
	}
	m.closed = true
	err := m.e.raw(")").crlf()
	m.f.c.wmu.Unlock()
	return err
}

// resync answers SELECT's QRESYNC parameter (RFC 7162 §3.2.5.2): the known UIDs expunged
// since the client's modseq as VANISHED (EARLIER), then the flags of the messages changed
// since, with their modseqs. The sequence match data is a hint the server may ignore.
func (c *wireConn) resync(q *wire.QResync) error {
	known := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	if q.KnownUIDs != nil {
		known = uidSet(*q.KnownUIDs)
	}
	if err := c.vanishedEarlier(q.ModSeq, known); err != nil {
		return err
	}
	o := &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: q.ModSeq}
	if q.ModSeq == 0 {
		o.ChangedSince = 0 // every message
	}
	return c.sess.fetch(&wireFetch{c: c}, imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, o)
}

// vanishedEarlier writes VANISHED (EARLIER) for the UIDs of set expunged after modseq.
func (c *wireConn) vanishedEarlier(modseq uint64, set imap.UIDSet) error {
	gone, err := c.sess.vanishedEarlier(modseq, set)
	if err != nil || len(gone) == 0 {
		return err
	}
	return c.untagged(func(e *enc) *enc { return e.raw("VANISHED (EARLIER) ").raw(gone.String()) })
}

// sortCmd answers SORT and UID SORT (RFC 5256), with ESORT's RETURN (RFC 5267).
func (c *wireConn) sortCmd(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	so := cmd.Sort
	if cs := strings.ToUpper(so.Charset); cs != "US-ASCII" && cs != "UTF-8" {
		return c.tagged(cmd.Tag, "NO", "BADCHARSET (US-ASCII UTF-8)", "Only US-ASCII and UTF-8 are supported")
	}
	cr, err := criteria(so.Key)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	keys := make([]sortKey, len(so.Criteria))
	for i, k := range so.Criteria {
		keys[i] = sortKey{key: k.Key, reverse: k.Reverse}
	}
	kind := numSeq
	if cmd.UID {
		kind = numUID
	}
	nums, err := c.sess.sort(kind, keys, &cr)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if so.Return != nil && slices.Contains(so.Return, "SAVE") {
		return c.tagged(cmd.Tag, "BAD", "", "SORT RETURN (SAVE) is not offered")
	}
	err = c.untagged(func(e *enc) *enc {
		if so.Return == nil {
			e.raw("SORT")
			for _, n := range nums {
				e.sp().num(n)
			}
			return e
		}
		// ESORT (RFC 5267 §3.2): MIN and MAX are the first and last in the sorted
		// order, ALL keeps that order.
		e.raw(`ESEARCH (TAG `).str(cmd.Tag).raw(")")
		if cmd.UID {
			e.raw(" UID")
		}
		all := len(so.Return) == 0 || slices.Contains(so.Return, "ALL")
		if slices.Contains(so.Return, "MIN") && len(nums) > 0 {
			e.raw(" MIN ").num(nums[0])
		}
		if slices.Contains(so.Return, "MAX") && len(nums) > 0 {
			e.raw(" MAX ").num(nums[len(nums)-1])
		}
		if all && len(nums) > 0 {
			e.raw(" ALL ").orderedSet(nums)
		}
		if slices.Contains(so.Return, "COUNT") {
			e.raw(" COUNT ").num(uint32(len(nums)))
		}
		return e
	})
	if err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}

// quota answers GETQUOTAROOT, GETQUOTA and SETQUOTA (RFC 9208) from the store's per-user
// quota: one root, "", over all the user's mailboxes, with the STORAGE resource in units
// of 1024 octets. Without a quota no mailbox has a root. The quota is the administrator's:
// SETQUOTA is refused.
func (c *wireConn) quota(cmd *wire.Command) error {
	limit := int64(c.srv.store.Config().Quota)
	writeQuota := func() error {
		used, err := c.sess.usage()
		if err != nil {
			return err
		}
		return c.untagged(func(e *enc) *enc {
			return e.raw(`QUOTA "" (STORAGE `).num64((used + 1023) / 1024).sp().num64(limit / 1024).raw(")")
		})
	}
	switch cmd.Name {
	case "SETQUOTA":
		return c.tagged(cmd.Tag, "NO", imap.ResponseCodeNoPerm, "Quotas are set by the administrator")
	case "GETQUOTA":
		if cmd.Mailbox != "" || limit == 0 {
			return c.tagged(cmd.Tag, "NO", imap.ResponseCodeNonExistent, "No such quota root")
		}
		if err := writeQuota(); err != nil {
			return c.replyErr(cmd, err)
		}
		return c.reply(cmd, nil, "")
	}
	name, err := c.mailboxName(cmd.Mailbox)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	if _, err := c.sess.Status(name, &imap.StatusOptions{}); err != nil {
		return c.replyErr(cmd, err)
	}
	err = c.untagged(func(e *enc) *enc {
		e.raw("QUOTAROOT ").mailbox(name)
		if limit > 0 {
			e.raw(` ""`)
		}
		return e
	})
	if err != nil {
		return err
	}
	if limit > 0 {
		if err := writeQuota(); err != nil {
			return c.replyErr(cmd, err)
		}
	}
	return c.reply(cmd, nil, "")
}

// thread answers THREAD and UID THREAD ORDEREDSUBJECT (RFC 5256).
func (c *wireConn) thread(cmd *wire.Command) error {
	if ok, err := c.needSelected(cmd); !ok {
		return err
	}
	th := cmd.Thread
	if cs := strings.ToUpper(th.Charset); cs != "US-ASCII" && cs != "UTF-8" {
		return c.tagged(cmd.Tag, "NO", "BADCHARSET (US-ASCII UTF-8)", "Only US-ASCII and UTF-8 are supported")
	}
	threads := c.sess.threadOrderedSubject
	switch th.Algorithm {
	case "ORDEREDSUBJECT":
	case "REFERENCES":
		threads = c.sess.threadReferences
	default:
		return c.tagged(cmd.Tag, "BAD", "", "Unknown THREAD algorithm")
	}
	cr, err := criteria(th.Key)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	kind := numSeq
	if cmd.UID {
		kind = numUID
	}
	roots, err := threads(kind, &cr)
	if err != nil {
		return c.replyErr(cmd, err)
	}
	var b strings.Builder
	writeThreads(&b, roots)
	if err := c.untagged(func(e *enc) *enc { return e.raw("THREAD ").raw(b.String()) }); err != nil {
		return err
	}
	return c.reply(cmd, nil, "")
}
