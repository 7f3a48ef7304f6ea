package imapd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
	"github.com/portcullis-mail/portcullis/store"
)

// catenate reads the parts of an APPEND's CATENATE message (RFC 4469) and returns the
// message they make: TEXT parts as sent, URL parts copied from the user's messages. It
// is held in memory within the server's memory budget (Config.FetchMemory) and bounded
// by the store's max_message_size. err refuses the APPEND (the rest of the command was
// skipped): NO [TRYCREATE] when the mailbox does not exist, NO [BADURL url] for a URL
// that names no message or section; perr is the parser's, as NextAppend's.
func (c *wireConn) catenate(name string) (msg []byte, release func(), perr, err error) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	abort := func(e error) ([]byte, func(), error, error) {
		release()
		if perr := c.p.AbortAppend(); perr != nil {
			return nil, func() {}, perr, nil
		}
		return nil, func() {}, nil, e
	}
	ctxt, cancel := ctx()
	_, merr := c.sess.user.Mailbox(ctxt, name)
	cancel()
	if errors.Is(merr, store.ErrNoMailbox) {
		// RFC 4469 §5: before any URL is looked at, as Dovecot answers.
		return abort(&imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"})
	}
	if merr != nil {
		return abort(c.sess.logErr("append", merr))
	}
	max := int64(c.srv.store.Config().MaxMessageSize)
	var buf bytes.Buffer
	reserve := func(n int64) error {
		if int64(buf.Len())+n > max {
			return storeErr(store.ErrTooBig)
		}
		r, err := c.srv.mem.acquire(context.Background(), n)
		if err != nil {
			return err
		}
		releases = append(releases, r)
		return nil
	}
	for {
		part, perr := c.p.NextCatenatePart()
		if perr != nil {
			release()
			return nil, func() {}, perr, nil
		}
		if part == nil {
			return buf.Bytes(), release, nil, nil
		}
		if part.Text != nil {
			if err := reserve(part.Size); err != nil {
				return abort(err)
			}
			if _, err := io.Copy(&buf, part.Text); err != nil {
				release()
				return nil, func() {}, fmt.Errorf("%w: %w", wire.ErrIO, err), nil
			}
			continue
		}
		if err := c.sess.copyURL(&buf, part.URL, reserve); err != nil {
			return abort(err)
		}
	}
}

// imapURL is what a CATENATE URL names (RFC 5092 §6: "/" mailbox [";UIDVALIDITY=" n]
// "/;UID=" n ["/;SECTION=" section] ["/;PARTIAL=" offset ["." length]]), optionally
// after "imap://authority".
type imapURL struct {
	mailbox     string
	uidValidity uint32
	uid         uint32
	section     imap.FetchItemBodySection
	partial     *imap.SectionPartial
}

func badURL(u string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCode("BADURL " + strings.NewReplacer("]", "%5D", "\r", "", "\n", "").Replace(u)),
		Text: "the URL names no message or section of yours"}
}

func parseIMAPURL(raw string) (*imapURL, bool) {
	s := raw
	if len(s) > 7 && strings.EqualFold(s[:7], "imap://") {
		i := strings.IndexByte(s[7:], '/')
		if i < 0 {
			return nil, false
		}
		s = s[7+i:]
	}
	if !strings.HasPrefix(s, "/") {
		return nil, false
	}
	segs := strings.Split(s[1:], "/;")
	if len(segs) < 2 {
		return nil, false
	}
	u := &imapURL{}
	mbox, params, _ := strings.Cut(segs[0], ";")
	mbox = strings.TrimSuffix(mbox, "/")
	var err error
	if u.mailbox, err = url.PathUnescape(mbox); err != nil || u.mailbox == "" {
		return nil, false
	}
	if params != "" {
		k, v, _ := strings.Cut(strings.TrimSuffix(params, "/"), "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !strings.EqualFold(k, "UIDVALIDITY") || err != nil || n == 0 {
			return nil, false
		}
		u.uidValidity = uint32(n)
	}
	for i, seg := range segs[1:] {
		k, v, ok := strings.Cut(seg, "=")
		if !ok {
			return nil, false
		}
		switch strings.ToUpper(k) {
		case "UID":
			n, err := strconv.ParseUint(v, 10, 32)
			if i != 0 || err != nil || n == 0 {
				return nil, false
			}
			u.uid = uint32(n)
		case "SECTION":
			sec, err := url.PathUnescape(v)
			if i != 1 || err != nil || !parseURLSection(sec, &u.section) {
				return nil, false
			}
		case "PARTIAL":
			off, l, hasLen := strings.Cut(v, ".")
			o, err := strconv.ParseUint(off, 10, 32)
			if err != nil {
				return nil, false
			}
			u.partial = &imap.SectionPartial{Offset: int64(o), Size: 1 << 62}
			if hasLen {
				n, err := strconv.ParseUint(l, 10, 32)
				if err != nil || n == 0 {
					return nil, false
				}
				u.partial.Size = int64(n)
			}
		default:
			return nil, false
		}
	}
	return u, u.uid != 0
}

// parseURLSection reads a section of a URL: part numbers, then HEADER, TEXT or MIME
// (HEADER.FIELDS is not offered in URLs).
func parseURLSection(s string, bs *imap.FetchItemBodySection) bool {
	s = strings.ToUpper(s)
	for s != "" {
		num, rest, _ := strings.Cut(s, ".")
		n, err := strconv.ParseUint(num, 10, 31)
		if err != nil {
			switch s {
			case "HEADER":
				bs.Specifier = imap.PartSpecifierHeader
			case "TEXT":
				bs.Specifier = imap.PartSpecifierText
			case "MIME":
				if len(bs.Part) == 0 {
					return false
				}
				bs.Specifier = imap.PartSpecifierMIME
			default:
				return false
			}
			return true
		}
		if n == 0 || len(bs.Part) >= maxPartDepth {
			return false
		}
		bs.Part = append(bs.Part, int(n))
		s = rest
	}
	return true
}

// copyURL appends what an IMAP URL names, of the session's user's messages, to w.
// reserve is asked for the bytes first.
func (s *session) copyURL(w io.Writer, raw string, reserve func(int64) error) error {
	u, ok := parseIMAPURL(raw)
	if !ok {
		return badURL(raw)
	}
	c, cancel := ctx()
	defer cancel()
	mb, err := s.user.Mailbox(c, u.mailbox)
	if err != nil || (u.uidValidity != 0 && u.uidValidity != mb.UIDValidity) {
		return badURL(raw)
	}
	msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, mb, []uint32{u.uid})
	if err != nil || len(msgs) != 1 {
		return badURL(raw)
	}
	mf := &msgFile{s: s, mb: mb, m: msgs[0], cmd: &fetchCmd{maxWork: int64(s.srv.cfg.MaxFetchParseSize), buf: make([]byte, copyBufSize)}}
	defer mf.close()
	src, ok, err := mf.section(&u.section)
	if err != nil || !ok {
		return badURL(raw)
	}
	total, err := mf.size(src)
	if err != nil {
		return badURL(raw)
	}
	off, n := literalRange(total, u.partial)
	if err := reserve(n); err != nil {
		return err
	}
	return mf.write(w, src, off, n)
}
