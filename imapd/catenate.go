package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
	"github.com/portcullis-mail/portcullis/store"
)

// catenate reads the parts of an APPEND's CATENATE message (RFC 4469) and returns the
// message they make: TEXT parts as sent, URL parts copied from the user's messages. It
// is assembled in a temporary file (the client may pause between parts and within a
// TEXT literal for as long as the command's read deadline: memory of the server's budget
// held meanwhile made every other session's FETCH wait) and bounded by the store's
// max_message_size; release removes it. err refuses the APPEND (the rest of the command
// was skipped): NO [TRYCREATE] when the mailbox does not exist, NO [BADURL url] for a URL
// that names no message or section; perr is the parser's, as NextAppend's.
func (c *wireConn) catenate(name string) (msg literal, release func(), perr, err error) {
	release = func() {}
	abort := func(e error) (literal, func(), error, error) {
		release()
		if perr := c.p.AbortAppend(); perr != nil {
			return literal{}, func() {}, perr, nil
		}
		return literal{}, func() {}, nil, e
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
	f, ferr := spoolFile()
	if ferr != nil {
		return abort(c.sess.logErr("append", ferr))
	}
	release = func() { f.Close() }
	max := int64(c.srv.store.Config().MaxMessageSize)
	var size int64
	binary := false // a TEXT part was a literal8
	reserve := func(n int64) error {
		if size+n > max {
			return storeErr(store.ErrTooBig)
		}
		return nil
	}
	var werr error
	w := writerFunc(func(p []byte) (int, error) {
		n, err := f.Write(p)
		size += int64(n)
		if err != nil {
			werr = fmt.Errorf("imapd: spool file: %w", err)
		}
		return n, werr
	})
	for {
		part, perr := c.p.NextCatenatePart()
		if perr != nil {
			release()
			return literal{}, func() {}, perr, nil
		}
		if part == nil {
			if !binary {
				return literal{io.NewSectionReader(f, 0, size), size}, release, nil, nil
			}
			// A literal8 TEXT part (RFC 4469 §3 with BINARY): its binary entities are
			// stored in base64, as binaryAppend stores a literal8 APPEND's.
			out, mem, err := c.sess.binarySpooled(f, size)
			release()
			if err != nil {
				return literal{}, func() {}, nil, err
			}
			return literal{bytes.NewReader(out), int64(len(out))}, mem, nil, nil
		}
		binary = binary || part.Binary
		if part.Text != nil {
			if err := reserve(part.Size); err != nil {
				return abort(err)
			}
			if _, err := io.Copy(w, part.Text); err != nil {
				if werr != nil { // the spool file's, not the client's
					return abort(c.sess.logErr("append", werr))
				}
				release()
				return literal{}, func() {}, fmt.Errorf("%w: %w", wire.ErrIO, err), nil
			}
			continue
		}
		// Copying from the user's file holds the budget: not the client.
		mem, err := c.srv.mem.acquire(context.Background(), 2*copyBufSize+parseBufSize)
		if err != nil {
			return abort(err)
		}
		err = func() error {
			defer mem() // also if the copy panics: the budget outlives the connection
			return c.sess.copyURL(w, part.URL, reserve)
		}()
		if err != nil {
			return abort(err)
		}
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// imapURL is what a CATENATE URL names (RFC 5092 §6: "/" mailbox [";UIDVALIDITY=" n]
// "/;UID=" n ["/;SECTION=" section] ["/;PARTIAL=" offset ["." length]]), optionally
// after "imap://authority".
type imapURL struct {
	// absolute: the URL had "imap://" [user [";AUTH=" mech] "@"] host [":" port]; user
	// is percent-decoded ("" when the URL names none: an anonymous login), host is
	// without its port or brackets, lower case.
	absolute    bool
	user, host  string
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
	u := &imapURL{}
	if len(s) > 7 && strings.EqualFold(s[:7], "imap://") {
		i := strings.IndexByte(s[7:], '/')
		if i < 0 {
			return nil, false
		}
		if !u.parseAuthority(s[7 : 7+i]) {
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

// parseAuthority reads an IMAP URL's authority (RFC 5092 §6: [iuserinfo "@"] host
// [":" port], iuserinfo = enc-user [";AUTH=" ("*" / enc-auth-type)]). An "@" in the
// user name should be percent-encoded; one that is not is taken as part of the name (the
// host follows the last "@").
func (u *imapURL) parseAuthority(a string) bool {
	u.absolute = true
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		user := a[:i]
		// Byte by byte, ASCII only: strings.ToUpper changes the length of some
		// characters (and turns each byte that is not UTF-8 into U+FFFD, three
		// bytes), so an index into its result is no index into user.
		for j := 0; j+6 <= len(user); j++ {
			if user[j] == ';' && asciiEqualFold(user[j+1:j+6], "AUTH=") {
				user = user[:j]
				break
			}
		}
		var err error
		if u.user, err = url.PathUnescape(user); err != nil {
			return false
		}
		a = a[i+1:]
	}
	if strings.HasPrefix(a, "[") { // IP-literal
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		u.host = a[1:end]
	} else {
		u.host, _, _ = strings.Cut(a, ":")
	}
	u.host = strings.ToLower(u.host)
	return u.host != ""
}

// asciiEqualFold compares a with the upper-case ASCII b, ignoring the case of a's
// ASCII letters only.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

// resolves reports whether an absolute URL names this session's user on this server (RFC
// 4469 §5, RFC 5092 §3): a URL naming another user or an anonymous login (no user), or
// another server, is one the server cannot resolve, answered NO [BADURL] rather than
// copied from the user's own mailbox of that name. The user is the session's, as its
// canonical name or as the client logged in. This server is localhost, a loopback or the
// connection's own address, the machine's host name, or the name the client asked for
// in its TLS handshake (SNI); other names it has (a DNS name behind a proxy) it cannot
// know, and a URL with one gets BADURL: relative URLs ("/INBOX/;UID=1"), which the
// RFC's examples and clients use, resolve wherever the client connected. (Dovecot
// accepts only relative URLs in CATENATE.)
func (s *session) resolves(u *imapURL) bool {
	if !u.absolute {
		return true
	}
	if u.user == "" || !(strings.EqualFold(u.user, s.user.Name()) || strings.EqualFold(u.user, s.loginName)) {
		return false
	}
	if u.host == "localhost" {
		return true
	}
	nc := s.conn.NetConn()
	if ip, err := netip.ParseAddr(u.host); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() {
			return true
		}
		local, err := netip.ParseAddrPort(nc.LocalAddr().String())
		return err == nil && ip == local.Addr().Unmap()
	}
	if tc, ok := nc.(*tls.Conn); ok && strings.EqualFold(tc.ConnectionState().ServerName, u.host) {
		return true
	}
	h, err := os.Hostname()
	return err == nil && strings.EqualFold(h, u.host)
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
	if !ok || !s.resolves(u) {
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
