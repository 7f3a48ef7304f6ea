package imapd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charsets for SEARCH in non-UTF-8 text
	"github.com/emersion/go-message/mail"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
	"github.com/portcullis-mail/portcullis/store"
)

// readMessage reads a message file into memory, up to MaxFetchSize (for SEARCH: FETCH
// streams from the file).
func (s *session) readMessage(mb store.Mailbox, m store.Message) ([]byte, error) {
	f, err := s.user.Open(mb, m)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(s.srv.cfg.MaxFetchSize)+1))
	s.srv.searchRead.Add(int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("imapd: read message %d: %w", m.UID, err)
	}
	if int64(len(b)) > int64(s.srv.cfg.MaxFetchSize) {
		return nil, fmt.Errorf("imapd: message %d larger than %d bytes", m.UID, int64(s.srv.cfg.MaxFetchSize))
	}
	if m.SizeCRLF != m.Size {
		b = mailheader.CRLF(b) // written by another program with bare LF; IMAP sends CRLF (RFC 3501 §2.3.4)
	}
	return b, nil
}

// readHeader reads a message file's header block, up to its empty line (included) or
// limit bytes; a header cut at the limit ends at its last whole line. A file too large
// for max_fetch_size has its header read all the same: only its body is out of reach.
func (s *session) readHeader(mb store.Mailbox, m store.Message, limit int64) ([]byte, error) {
	f, err := s.user.Open(mb, m)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := mailheader.ReadBlock(f, int(limit))
	if errors.Is(err, mailheader.ErrTooLong) { // cut at the limit: keep the whole lines
		b, err = b[:bytes.LastIndexByte(b, '\n')+1], nil
	}
	if err != nil {
		return nil, fmt.Errorf("imapd: read message %d: %w", m.UID, err)
	}
	s.srv.searchRead.Add(int64(len(b)))
	// The empty line that ends the header, which ReadBlock leaves out.
	return append(mailheader.CRLF(b), "\r\n"...), nil
}

func needsBody(o *imap.FetchOptions) bool {
	return o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// setsSeen reports whether the fetch sets \Seen implicitly (RFC 3501 §6.4.5: BODY[...]
// without .PEEK, and RFC822/RFC822.TEXT, which arrive here as non-peek sections).
func setsSeen(o *imap.FetchOptions) bool {
	for _, bs := range o.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range o.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// fetchLimits refuses a FETCH whose items exceed the per-command bounds (issue 15 item
// 9), before anything is done.
func fetchLimits(o *imap.FetchOptions) error {
	if n := len(o.BodySection) + len(o.BinarySection) + len(o.BinarySectionSize); n > maxFetchSections {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("too many body sections in one FETCH (%d, at most %d)", n, maxFetchSections)}
	}
	for _, bs := range o.BodySection {
		if n := len(bs.HeaderFields) + len(bs.HeaderFieldsNot); n > maxHeaderFieldNames {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
				Text: fmt.Sprintf("too many header field names (%d, at most %d)", n, maxHeaderFieldNames)}
		}
	}
	return nil
}

func (s *session) fetch(w fetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	if o.ModSeq || o.ChangedSince > 0 {
		s.condstore = true
	}
	if s.condstore && (o.Flags || o.ChangedSince > 0) {
		o.ModSeq = true // RFC 7162 §3.1.4.1: FETCH with FLAGS carries MODSEQ
	}
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if err := fetchLimits(o); err != nil {
		return err
	}
	seqs, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return nil
	}
	c, cancel := ctx()
	defer cancel()
	// EXAMINE is read-only: fetching a body there never sets \Seen.
	if setsSeen(o) && !sel.readOnly {
		if _, err := s.user.SetFlags(c, sel.mb, uids, store.FlagsAdd, []string{store.FlagSeen}, s); err != nil {
			return s.logErr("fetch", err)
		}
		o.Flags = true // the changed flags are part of the response (RFC 3501 §6.4.5)
	}
	cmd := &fetchCmd{maxWork: int64(s.srv.cfg.MaxFetchParseSize)}
	if needsBody(o) || o.Envelope {
		cmd.buf = make([]byte, copyBufSize)
	}
	for start := 0; start < len(uids); start += 256 {
		if err := s.fetchBatch(w, sel, seqs, uids, start, min(start+256, len(uids)), o, cmd); err != nil {
			return err
		}
	}
	if cmd.unreadable {
		// A literal already announced was completed with padding (writeLiteral): the
		// client must not take it for the message.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug,
			Text: "Some of the requested messages could not be read"}
	}
	if cmd.vanished {
		// RFC 5530 §3: another session expunged some of them; the EXPUNGE comes with
		// the next command that may send it. Dovecot's words, which imaptest knows.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "EXPUNGEISSUED",
			Text: "Some of the requested messages no longer exist"}
	}
	return nil
}

// fetchBatch answers FETCH for uids[start:end], with its own deadline for the index: a
// FETCH of many large messages may stream for longer than one store operation may take.
func (s *session) fetchBatch(w fetchWriter, sel *selected, seqs, uids []uint32, start, end int, o *imap.FetchOptions, cmd *fetchCmd) error {
	c, cancel := ctx()
	defer cancel()
	// Envelopes are usually in memory (msgCache): the index's copies are read only for
	// the messages whose envelope is not.
	read := s.user.MessagesByUIDWithoutEnvelope
	if o.Envelope && s.srv.cache == nil {
		read = s.user.MessagesByUID
	}
	msgs, err := read(c, sel.mb, uids[start:end])
	if err != nil {
		return s.logErr("fetch", err)
	}
	byUID := make(map[uint32]store.Message, len(msgs))
	var noEnv []uint32
	for _, m := range msgs {
		byUID[m.UID] = m
		if o.Envelope && s.srv.cache != nil && s.srv.cache.get(envelopeKey(s.user.Name(), m.Key)) == nil {
			noEnv = append(noEnv, m.UID)
		}
	}
	if len(noEnv) > 0 {
		full, err := s.user.MessagesByUID(c, sel.mb, noEnv)
		if err != nil {
			return s.logErr("fetch", err)
		}
		for _, m := range full {
			byUID[m.UID] = m
		}
	}
	// One hold for the batch, resized to each message's share and to none after it;
	// the deferred release gives it back on every way out, a panic's too (the
	// connection's recover ends only the connection: a share kept would be kept for
	// the life of the process).
	h := &hold{b: s.srv.mem}
	defer h.resize(0)
	for i := start; i < end; i++ {
		m, ok := byUID[uids[i]]
		if !ok {
			cmd.vanished = true // expunged by another session; the EXPUNGE comes with the next poll
			continue
		}
		if o.ChangedSince > 0 && m.ModSeq <= o.ChangedSince {
			continue // RFC 7162 §3.1.4.1
		}
		if err := cmd.overLimit(); err != nil {
			s.srv.rlog.Info("imap fetch over limit", "user", s.user.Name(), "err", err)
			return err
		}
		if err := h.resize(fetchHold(m, o)); err != nil {
			s.srv.rlog.Warn("imap fetch waits for memory", "user", s.user.Name(), "err", err)
			return err
		}
		m.Flags = sel.withRecent(m.UID, sel.known(m.Flags))
		mf := &msgFile{s: s, mb: sel.mb, m: m, cmd: cmd, hold: h}
		if needsBody(o) || (o.Envelope && s.cachedEnvelope(m) == nil) {
			// Open the file before "* N FETCH (" goes out: another session may have
			// expunged the message since its record was read (issue 16 item 7: FETCH
			// raced EXPUNGE, and the client got an empty body for it). Once open, the
			// file stays readable to the end of this message.
			if _, err := mf.open(); errors.Is(err, store.ErrNoMessage) {
				h.resize(0)
				cmd.vanished = true
				continue
			}
		}
		err = s.fetchOne(w.CreateMessage(seqs[i]), mf, o)
		mf.close()
		h.resize(0)
		if err != nil {
			if ie := (*imap.Error)(nil); errors.As(err, &ie) && ie.Code == imap.ResponseCodeUnavailable {
				s.srv.rlog.Warn("imap fetch waits for memory", "user", s.user.Name(), "err", err)
			}
			return err
		}
	}
	return nil
}

// fetchHold is what answering FETCH for m holds in memory while it copies sections from
// the file to the client: the copy buffers (the command's, and a line-end converter's
// or decoder's). Parsing its MIME structure holds parseHold more, only while it parses
// (msgFile.structure).
func fetchHold(m store.Message, o *imap.FetchOptions) int64 {
	if !needsBody(o) && !o.Envelope {
		return 0
	}
	return 2 * copyBufSize
}

// parseHold is what parsing m's MIME structure holds beyond the copy buffers: the
// parser's buffer, and the header fields and offsets it keeps.
func parseHold(m store.Message) int64 {
	return parseBufSize + min(m.SizeCRLF, maxKeptHeaders*2)
}

func (s *session) fetchOne(w msgWriter, mf *msgFile, o *imap.FetchOptions) error {
	mb, m, cmd := mf.mb, mf.m, mf.cmd
	w.WriteUID(imap.UID(m.UID))
	if o.Flags {
		w.WriteFlags(toIMAPFlags(m.Flags))
	}
	if o.InternalDate {
		w.WriteInternalDate(m.InternalDate)
	}
	if o.ModSeq {
		w.WriteModSeq(m.ModSeq)
	}
	if o.RFC822Size {
		w.WriteRFC822Size(m.SizeCRLF)
	}
	if !needsBody(o) && !o.Envelope {
		return w.Close()
	}
	var env *envelope
	if o.Envelope {
		env = s.cachedEnvelope(m)
		if env != nil && !needsBody(o) {
			w.WriteEnvelope(env)
			return w.Close()
		}
	}
	skip := func(err error) error {
		var ie *imap.Error
		if errors.As(err, &ie) {
			// The client's (over a limit) or no room in the memory budget for a parse:
			// ends the command.
			w.Close()
			return err
		}
		// The message vanished or is unreadable: skip the rest of it, keep the session;
		// the command ends NO [EXPUNGEISSUED] when it vanished.
		if gone(err) {
			cmd.vanished = true
			s.srv.rlog.Info("imap fetch", "user", s.user.Name(), "uid", m.UID, "err", err)
		} else {
			s.srv.rlog.Error("imap fetch", "user", s.user.Name(), "uid", m.UID, "err", err)
		}
		return w.Close()
	}
	if o.Envelope {
		if env == nil {
			t, err := mf.structure(false)
			if err != nil {
				return skip(err)
			}
			env = s.envelope(mb, m.UID, m.Key, t.root)
		}
		w.WriteEnvelope(env)
	}
	if o.BodyStructure != nil {
		t, err := mf.structure(true)
		if err != nil {
			return skip(err)
		}
		w.WriteBodyStructure(t.bodyStructure())
	}
	// fail answers the error of a section: the client's (an *imap.Error: over the
	// FETCH's parse limit, a transfer encoding BINARY cannot undo) ends the command, any
	// other skips the message.
	fail := func(err error) error {
		var ie *imap.Error
		if errors.As(err, &ie) {
			w.Close()
			return err
		}
		return skip(err)
	}
	binary := func(part []int) (source, bool, error) {
		if err := cmd.overLimit(); err != nil {
			return source{}, false, err
		}
		return mf.binarySection(part)
	}
	for _, bs := range o.BodySection {
		if err := cmd.overLimit(); err != nil {
			return fail(err)
		}
		src, ok, err := mf.section(bs)
		if err != nil {
			return skip(err)
		}
		open := func(size int64) io.WriteCloser { return w.WriteBodySection(bs, size) }
		if err := mf.writeLiteral(open, bs.Partial, src, ok); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		src, ok, err := binary(bs.Part)
		if err != nil {
			return fail(err)
		}
		open := func(size int64) io.WriteCloser { return w.WriteBinarySection(bs, size) }
		if err := mf.writeLiteral(open, bs.Partial, src, ok); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySectionSize {
		src, ok, err := binary(bs.Part)
		if err != nil {
			return fail(err)
		}
		var n int64
		if ok {
			if n, err = mf.size(src); err != nil {
				return skip(err)
			}
		}
		w.WriteBinarySectionSize(bs, uint32(min(n, 1<<32-1)))
	}
	return w.Close()
}

// literalRange is the part of a section of total bytes that a partial asks for
// (RFC 3501 §6.4.5: none when it starts beyond the end).
func literalRange(total int64, partial *imap.SectionPartial) (off, n int64) {
	if partial == nil {
		return 0, total
	}
	if partial.Offset >= total || partial.Offset < 0 {
		return 0, 0
	}
	return partial.Offset, min(partial.Size, total-partial.Offset)
}

// countWriter counts what reaches the client and keeps the first write error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// writeLiteral writes one section as a literal: its size first (from the structure, or
// by a pass over a filtered header or a decoded body), then its bytes, streamed from the
// file. A file that ends early or fails to read once the size is out is logged and the
// literal padded, so the client stays in step with the protocol, and the command ends NO
// (fetchCmd.readFailed): [EXPUNGEISSUED] when the file is gone, as when it is gone before
// the response starts (fetchBatch), so the client does not keep the padding as the
// message. A size that cannot be read sends an empty literal, and the same NO.
func (mf *msgFile) writeLiteral(open func(size int64) io.WriteCloser, partial *imap.SectionPartial, src source, ok bool) error {
	var total int64
	if ok {
		t, err := mf.size(src)
		if err != nil {
			mf.logReadErr(err)
		} else {
			total = t
		}
	}
	if testHookBeforeBody != nil {
		testHookBeforeBody(mf)
	}
	off, n := literalRange(total, partial)
	lw := open(n)
	if n > 0 {
		cw := &countWriter{w: lw}
		err := mf.write(cw, src, off, n)
		if cw.err != nil {
			lw.Close()
			return cw.err
		}
		if err == nil && cw.n < n {
			err = fmt.Errorf("imapd: message %d ended %d bytes early", mf.m.UID, n-cw.n)
		}
		if err != nil {
			mf.logReadErr(err)
			pad := bytes.Repeat([]byte(" "), int(min(n-cw.n, copyBufSize)))
			for cw.n < n && cw.err == nil {
				cw.Write(pad[:min(int64(len(pad)), n-cw.n)])
			}
			if cw.err != nil {
				lw.Close()
				return cw.err
			}
		}
	}
	return lw.Close()
}

// logReadErr logs why a section could not be read and records it for the command's
// status: the message gone is another session's doing (Info), anything else the
// server's (Error).
func (mf *msgFile) logReadErr(err error) {
	mf.cmd.readFailed(err)
	if gone(err) {
		mf.s.srv.rlog.Info("imap fetch: message gone mid-response", "user", mf.s.user.Name(), "uid", mf.m.UID, "err", err)
		return
	}
	mf.s.srv.rlog.Error("imap fetch", "user", mf.s.user.Name(), "uid", mf.m.UID, "err", err)
}

// cachedEnvelope returns the envelope from the server's memory or from the index (nil when
// neither has it). Decoding the index's JSON on every FETCH ENVELOPE was a third of FETCH.
func (s *session) cachedEnvelope(m store.Message) *envelope {
	key := envelopeKey(s.user.Name(), m.Key)
	if env, ok := s.srv.cache.get(key).(*envelope); ok {
		return env
	}
	if m.Envelope == nil {
		return nil
	}
	e := indexEnvelope{envelope: &envelope{}}
	if json.Unmarshal(m.Envelope, &e) != nil || e.V != envelopeVersion {
		return nil // made again and cached over by envelope
	}
	s.srv.cache.put(key, e.envelope, int64(len(m.Envelope))*2)
	return e.envelope
}

// envelopeVersion marks the envelopes cached in the index: those of another version
// (before 2: without groups, source-routed and commented addresses; before 3: without
// source routes and addresses without a domain) are made again.
const envelopeVersion = 3

type indexEnvelope struct {
	V int `json:"v,omitempty"`
	*envelope
}

// envelope makes the envelope from the header fields the structure kept and caches it in
// the index, so the next FETCH ENVELOPE (what mail clients ask for when listing a folder)
// does not open the file.
func (s *session) envelope(mb store.Mailbox, uid uint32, key string, root *part) *envelope {
	env := extractEnvelope(root.header)
	if b, err := json.Marshal(indexEnvelope{V: envelopeVersion, envelope: env}); err == nil {
		s.srv.cache.put(envelopeKey(s.user.Name(), key), env, int64(len(b))*2)
		c, cancel := ctx()
		defer cancel()
		_ = s.user.CacheEnvelope(c, mb, uid, b)
	}
	return env
}

// --- SEARCH ---

// search answers SEARCH; modseqs are the modseqs of the results, in their order, for the
// MODSEQ of a search on MODSEQ (RFC 7162 §3.1.5).
func (s *session) search(kind numKind, criteria *imap.SearchCriteria, opts *imap.SearchOptions) (*imap.SearchData, []uint64, error) {
	sel, err := s.selected()
	if err != nil {
		return nil, nil, err
	}
	c, cancel := ctx()
	defer cancel()
	all := imap.SeqSet{{Start: 1, Stop: 0}}
	seqs, uids := sel.resolve(all)
	var res []uint32 // seqs or uids
	var resUIDs []uint32
	var modseqs []uint64
	for start := 0; start < len(uids); start += 256 {
		end := min(start+256, len(uids))
		msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, uids[start:end])
		if err != nil {
			return nil, nil, s.logErr("search", err)
		}
		byUID := make(map[uint32]store.Message, len(msgs))
		for _, m := range msgs {
			byUID[m.UID] = m
		}
		for i := start; i < end; i++ {
			m, ok := byUID[uids[i]]
			if !ok {
				continue
			}
			matched, fatal := s.matchOne(sel, m, seqs[i], criteria)
			if fatal != nil {
				return nil, nil, fatal
			}
			if matched {
				resUIDs = append(resUIDs, m.UID)
				modseqs = append(modseqs, m.ModSeq)
				if kind == numUID {
					res = append(res, m.UID)
				} else {
					res = append(res, seqs[i])
				}
			}
		}
	}
	if opts != nil && opts.ReturnSave {
		sel.saved = resUIDs
	}
	d := &imap.SearchData{Count: uint32(len(res))}
	if len(res) > 0 {
		d.Min, d.Max = res[0], res[len(res)-1]
	}
	if kind == numUID {
		var set imap.UIDSet
		for _, u := range res {
			set.AddNum(imap.UID(u))
		}
		d.All = set
	} else {
		var set imap.SeqSet
		set.AddNum(res...)
		d.All = set
	}
	return d, modseqs, nil
}

// matchOne says whether m matches criteria; fatal is the memory budget's refusal, which
// ends the SEARCH. What the match reserved of the budget is given back by a deferred
// done, also if the match panics: the connection's recover ends only the connection,
// and a share kept would be kept until the server restarts (every FETCH then waits for
// room that never comes).
func (s *session) matchOne(sel *selected, m store.Message, seq uint32, criteria *imap.SearchCriteria) (matched bool, fatal error) {
	mm := &matchMsg{s: s, sel: sel, mb: sel.mb, m: m, seq: seq}
	defer mm.done()
	matched = mm.match(criteria)
	return matched, mm.fatal
}

// testHookHeld, when set by a test, runs while a command holds a share of the memory
// budget outside FETCH: SEARCH's read of a message, APPEND's of a literal8.
var testHookHeld func(where string)

type matchMsg struct {
	s       *session
	sel     *selected
	mb      store.Mailbox
	m       store.Message
	seq     uint32
	buf     []byte
	err     error
	doc     *textDoc
	release func()
	hdr     *gomessage.Header // the header alone, for the criteria on header fields
	hdrRel  func()
	fatal   error // the server's memory budget had no room: the SEARCH fails
}

// maxSearchHeader bounds what SEARCH reads of a message for its criteria on header
// fields (SUBJECT, FROM, HEADER, SENTSINCE...): the header block only, as much as the
// MIME structure keeps (maxKeptHeaders). Reading whole messages for them let one cheap
// command read gigabytes of planted mail (issue 15 item 9).
const maxSearchHeader = maxKeptHeaders

// body reads the message into memory, within the server's budget (Config.
// FetchMemory) for it and the text decoded from it.
func (mm *matchMsg) body() []byte {
	if mm.buf == nil && mm.err == nil {
		release, err := mm.s.srv.mem.acquire(context.Background(), 2*min(mm.m.SizeCRLF, int64(mm.s.srv.cfg.MaxFetchSize)))
		if err != nil {
			mm.err, mm.fatal = err, err
			return nil
		}
		mm.release = release
		if testHookHeld != nil {
			testHookHeld("search")
		}
		mm.buf, mm.err = mm.s.readMessage(mm.mb, mm.m)
	}
	return mm.buf
}

// done drops what was read of the message and gives its memory back to the budget.
func (mm *matchMsg) done() {
	mm.buf, mm.doc, mm.hdr = nil, nil, nil
	if mm.release != nil {
		mm.release()
		mm.release = nil
	}
	if mm.hdrRel != nil {
		mm.hdrRel()
		mm.hdrRel = nil
	}
}

// header returns the message's header: from the whole message when it has been read,
// otherwise from its header block alone, read from the file up to maxSearchHeader (and
// max_fetch_size) within the memory budget. A file that cannot be read has an empty
// header, as it had when SEARCH read the whole message.
func (mm *matchMsg) header() gomessage.Header {
	if mm.hdr != nil {
		return *mm.hdr
	}
	if mm.buf != nil {
		h := mm.entity().Header
		mm.hdr = &h
		return h
	}
	limit := min(int64(maxSearchHeader), int64(mm.s.srv.cfg.MaxFetchSize))
	release, err := mm.s.srv.mem.acquire(context.Background(), 2*min(mm.m.SizeCRLF, limit))
	if err != nil {
		mm.fatal = err
		h := gomessage.Header{}
		mm.hdr = &h
		return h
	}
	mm.hdrRel = release
	b, err := mm.s.readHeader(mm.mb, mm.m, limit)
	if err != nil {
		mm.s.srv.rlog.Info("imap search", "user", mm.s.user.Name(), "uid", mm.m.UID, "err", err)
	}
	h := parseEntity(b).Header
	mm.hdr = &h
	return h
}

func (mm *matchMsg) entity() *gomessage.Entity { return parseEntity(mm.body()) }

// parseEntity parses a message (or its header block alone); one it cannot parse is empty.
func parseEntity(b []byte) *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(b))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e
}

// text returns the message's decoded search text, from the server's cache or decoded
// now (and cached).
func (mm *matchMsg) text() *textDoc {
	if mm.doc != nil {
		return mm.doc
	}
	key := textKey(mm.s.user.Name(), mm.m.Key)
	if d, ok := mm.s.srv.cache.get(key).(*textDoc); ok {
		mm.doc = d
		return d
	}
	mm.doc = newTextDoc(mm.entity())
	if mm.err == nil {
		mm.s.srv.cache.put(key, mm.doc, mm.doc.size()) // an unreadable file is not remembered as empty
	}
	return mm.doc
}

// match evaluates RFC 3501 §6.4.4 / RFC 9051 §6.4.4 search keys.
func (mm *matchMsg) match(c *imap.SearchCriteria) bool {
	n := uint32(len(mm.sel.uids))
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			if !containsUID(mm.sel.saved, mm.m.UID) {
				return false
			}
		} else if !seqSetContains(set, mm.seq, n) {
			return false
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			if !containsUID(mm.sel.saved, mm.m.UID) {
				return false
			}
		} else if !uidSetContains(set, mm.m.UID, mm.sel.maxUID()) {
			return false
		}
	}
	if !matchDate(mm.m.InternalDate, c.Since, c.Before) {
		return false
	}
	if c.ModSeq != nil && mm.m.ModSeq < c.ModSeq.ModSeq {
		return false // RFC 7162 §3.1.5
	}
	flags := mm.sel.withRecent(mm.m.UID, mm.m.Flags)
	for _, f := range c.Flag {
		if !hasFlag(flags, string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(flags, string(f)) {
			return false
		}
	}
	if c.Larger != 0 && mm.m.SizeCRLF <= c.Larger {
		return false
	}
	if c.Smaller != 0 && mm.m.SizeCRLF >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h := mail.Header{Header: mm.header()}
		for _, hf := range c.Header {
			if !matchHeaderFields(h.FieldsByKey(hf.Key), hf.Value) && !matchAddressFields(hf.Key, h.FieldsByKey(hf.Key), hf.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Text {
		if !mm.text().match(text, true) {
			return false
		}
	}
	for _, text := range c.Body {
		if !mm.text().match(text, false) {
			return false
		}
	}
	for i := range c.Not {
		if mm.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !mm.match(&c.Or[i][0]) && !mm.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

func containsUID(l []uint32, u uint32) bool {
	for _, x := range l {
		if x == u {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 3501 §6.4.4), except a
// bound in withinZone (OLDER, YOUNGER: within), which is compared to the second.
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() {
		if since.Location() != withinZone && d.Before(since) || since.Location() == withinZone && t.Before(since) {
			return false
		}
	}
	if !before.IsZero() {
		if before.Location() != withinZone && !d.Before(before) || before.Location() == withinZone && !t.Before(before) {
			return false
		}
	}
	return true
}

// withinZone marks a Since or Before of a search criterion that holds a time of day:
// go-imap's imap.SearchCriteria has no field for WITHIN's keys, and its dates are days.
var withinZone = time.FixedZone("WITHIN", 0)

// within is WITHIN's OLDER or YOUNGER (RFC 5032 §3) at now, in whole seconds as Dovecot
// compares: the internal date is at least (OLDER) or at most (YOUNGER) secs seconds
// before now. It is an OR of the key with itself, so that imap.SearchCriteria.And,
// which keeps the later Since (a day), does not merge it with a SINCE.
func within(op string, secs uint64, now time.Time) [2]imap.SearchCriteria {
	at := now.Truncate(time.Second).Add(-time.Duration(min(secs, 1<<32)) * time.Second).In(withinZone)
	var c imap.SearchCriteria
	if op == "OLDER" {
		c.Before = at.Add(time.Second) // before the next second: at or before at
	} else {
		c.Since = at
	}
	return [2]imap.SearchCriteria{c, c}
}

func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchAddressFields matches pattern against the address fields (From, Sender, Reply-To,
// To, Cc, Bcc) as addressText renders them: FROM user@domain finds
// <user (comment)@ (comment) domain>, which the field as it is does not contain.
func matchAddressFields(key string, fields gomessage.HeaderFields, pattern string) bool {
	switch strings.ToLower(key) {
	case "from", "sender", "reply-to", "to", "cc", "bcc":
	default:
		return false
	}
	if pattern == "" {
		return false
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		if strings.Contains(addressText(fields.Value()), pattern) {
			return true
		}
	}
	return false
}

// maxMIMEDepth bounds nesting when searching body text.
const maxMIMEDepth = 20
