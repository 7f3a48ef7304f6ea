package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/connlimit"
	"github.com/portcullis-mail/portcullis/internal/netlist"
)

// LMTP proxying (RFC 2033): each recipient is looked up in the directory and given to
// the LMTP listener of the back-end that holds it, in one transaction per back-end,
// opened at the recipient's RCPT so that the back-end's own answer (unknown user, quota)
// is the client's. A back-end that cannot be reached gives 451 4.3.0 to its recipients
// only; the message is read once and sent to every back-end concerned at once; the
// answers after DATA come back one per accepted recipient, in RCPT order (RFC 2033
// §4.2).

const (
	lmtpCommandTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2's server timeouts
	maxLMTPLine        = 2048
	maxLMTPRecipients  = 1000
	// lmtpMemMessage is the most of one message held in memory: a larger one goes to
	// an unlinked file in Config.SpoolDir. lmtpMemTotal bounds the bytes held in memory
	// by all sessions together (10,000 sessions of 256 KiB would be 2.5 GB): a session
	// that finds it used up spools from its first byte.
	lmtpMemMessage = 256 << 10
	lmtpMemTotal   = 32 << 20
)

// ServeLMTP serves LMTP clients (the front-ends' queues) on ln; only clients in
// Config.LMTPFrom are served, since LMTP has no authentication.
func (s *Server) ServeLMTP(ln net.Listener) error {
	if !s.group.Listen(ln) {
		return net.ErrClosed
	}
	defer s.group.Unlisten(ln)
	pool := connlimit.NewPool(connlimit.Limits{MaxConnections: s.cfg.MaxConnections,
		MaxConnectionsPerIP: -1, LoginTimeout: lmtpCommandTimeout})
	for {
		raw, err := connlimit.Accept(ln, func(err error, wait time.Duration) {
			s.log.Warn("proxy accept", "proto", "lmtp", "err", err, "retry_in", wait)
		})
		if err != nil {
			if s.group.Closed() {
				return net.ErrClosed
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		ip := connlimit.RemoteIP(raw)
		if !netlist.Contains(s.lmtpFrom, ip) {
			s.log.Warn("proxy: LMTP client not in lmtp_from", "remote", ip)
			connlimit.Refuse(raw, "554 5.7.1 not an LMTP client of this proxy")
			continue
		}
		slot, err := pool.Admit(ip, func(error) { raw.Close() })
		if err != nil {
			connlimit.Refuse(raw, "421 4.3.2 "+err.Error())
			continue
		}
		if !s.group.Go(raw, func() {
			defer slot.Release()
			defer raw.Close()
			slot.LoggedIn() // LMTP has no login: the whole session is its work
			l := &lmtpSession{s: s, conn: raw, ip: ip, r: bufio.NewReaderSize(raw, 4096), w: bufio.NewWriter(raw)}
			l.run()
		}) {
			slot.Release()
			raw.Close()
			return net.ErrClosed
		}
	}
}

type lmtpSession struct {
	s    *Server
	conn net.Conn
	ip   netip.Addr
	r    *bufio.Reader
	w    *bufio.Writer

	lhlo     bool
	mail     string               // the MAIL command's argument, "" outside a transaction
	accepted []lmtpRcpt           // recipients answered 2xx, in order
	links    map[string]*lmtpLink // by mail host, for this transaction
	rcpts    int
}

type lmtpRcpt struct {
	addr string
	link *lmtpLink
}

// lmtpLink is a transaction open on one back-end.
type lmtpLink struct {
	host string
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	err  error // the link failed: its recipients get 451 4.3.0
	n    int   // recipients accepted on it
}

func (l *lmtpSession) reply(line string) error {
	l.w.WriteString(line + "\r\n")
	l.conn.SetWriteDeadline(time.Now().Add(lmtpCommandTimeout))
	return l.w.Flush()
}

func (l *lmtpSession) run() {
	defer l.reset()
	if l.reply("220 "+l.s.cfg.Hostname+" LMTP proxy ready") != nil {
		return
	}
	for {
		l.conn.SetReadDeadline(time.Now().Add(lmtpCommandTimeout))
		line, err := readLine(l.r, maxLMTPLine)
		if err != nil {
			if errors.Is(err, errTooLong) {
				l.reply("500 5.5.2 line too long")
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "LHLO":
			if arg == "" {
				l.reply("501 5.5.4 LHLO wants a name")
				continue
			}
			l.reset()
			l.lhlo = true
			l.reply("250-" + l.s.cfg.Hostname + "\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE " + strconv.FormatInt(l.s.cfg.MaxMessageSize, 10))
		case "MAIL":
			switch {
			case !l.lhlo:
				l.reply("503 5.5.1 LHLO first")
			case l.mail != "":
				l.reply("503 5.5.1 nested MAIL")
			case !strings.HasPrefix(strings.ToUpper(arg), "FROM:"):
				l.reply("501 5.5.4 MAIL FROM:<address>")
			case l.sizeRefused(arg):
			default:
				l.mail = arg
				l.reply("250 2.1.0 OK")
			}
		case "RCPT":
			l.rcpt(arg)
		case "DATA":
			if !l.data() {
				return
			}
		case "RSET":
			l.reset()
			l.reply("250 2.0.0 OK")
		case "NOOP":
			l.reply("250 2.0.0 OK")
		case "QUIT":
			l.reply("221 2.0.0 bye")
			return
		case "VRFY":
			l.reply("252 2.5.0 cannot verify, but will try")
		default:
			l.reply("500 5.5.2 command not recognized")
		}
	}
}

// sizeRefused answers a MAIL command whose SIZE parameter (RFC 1870 §6) is malformed
// (501) or exceeds MaxMessageSize (552 5.3.4, so that the client does not send the
// message at all), and says whether it did.
func (l *lmtpSession) sizeRefused(arg string) bool {
	for _, p := range strings.Fields(arg)[1:] {
		kw, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(kw, "SIZE") {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) && v != "" && v[0] != '-' && v[0] != '+':
			n = math.MaxInt64 // a number too large for int64 is too large here too
		case err != nil || n < 0 || v[0] == '+':
			l.reply("501 5.5.4 SIZE wants a number of octets")
			return true
		}
		if n > l.s.cfg.MaxMessageSize {
			l.reply("552 5.3.4 message size exceeds fixed maximum message size")
			return true
		}
	}
	return false
}

// reset ends the transaction, closing the back-end links.
func (l *lmtpSession) reset() {
	for _, k := range l.links {
		if k.conn != nil {
			if k.err == nil {
				k.conn.SetWriteDeadline(time.Now().Add(time.Second))
				k.w.WriteString("QUIT\r\n")
				k.w.Flush()
			}
			k.conn.Close()
		}
	}
	l.mail, l.accepted, l.links, l.rcpts = "", nil, nil, 0
}

func (l *lmtpSession) rcpt(arg string) {
	if l.mail == "" {
		l.reply("503 5.5.1 MAIL first")
		return
	}
	if !strings.HasPrefix(strings.ToUpper(arg), "TO:") {
		l.reply("501 5.5.4 RCPT TO:<address>")
		return
	}
	rest := strings.TrimSpace(arg[3:])
	if !strings.HasPrefix(rest, "<") || !strings.Contains(rest, ">") {
		l.reply("501 5.1.3 RCPT TO:<address>")
		return
	}
	addr, params, _ := strings.Cut(rest[1:], ">")
	if l.rcpts++; l.rcpts > maxLMTPRecipients {
		l.reply("452 4.5.3 too many recipients")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.s.cfg.ConnectTimeout)
	defer cancel()
	u, err := l.s.dir.Lookup(ctx, addr)
	to := ""
	if errors.Is(err, directory.ErrNotFound) {
		// user+tag@domain: the user's, with the tag kept for the back-end's Sieve and
		// folders (as delivery/mailhost sends it).
		if local, domain, ok := strings.Cut(addr, "@"); ok {
			if i := strings.Index(local, l.s.cfg.RecipientDelimiter); i > 0 {
				if u, err = l.s.dir.Lookup(ctx, local[:i]+"@"+domain); err == nil {
					ul, ud, _ := strings.Cut(u.Address, "@")
					to = ul + local[i:] + "@" + ud
				}
			}
		}
	}
	switch {
	case errors.Is(err, directory.ErrNotFound):
		l.reply("550 5.1.1 no such user")
		return
	case err != nil:
		l.s.log.Warn("proxy: directory lookup failed", "proto", "lmtp", "rcpt", addr, "err", err)
		l.reply("451 4.3.0 directory unavailable, try again later")
		return
	case u.State == directory.StateMoving:
		// Held at the front-end, never bounced, while the mailbox moves.
		l.reply("451 4.2.1 mailbox being moved, try again later")
		return
	}
	host := u.MailHost
	if host == directory.HostHere {
		host = l.s.cfg.DefaultHost
	}
	b, ok := l.s.cfg.Backends[host]
	if !ok || b.LMTP == "" {
		l.s.log.Error("proxy: recipient's mail host is not an LMTP back-end", "rcpt", addr, "mail_host", u.MailHost)
		l.reply("451 4.3.0 mailbox temporarily unavailable, try again later")
		return
	}
	k := l.link(ctx, host, b.LMTP)
	if k.err != nil {
		l.reply("451 4.3.0 mailbox temporarily unavailable, try again later")
		return
	}
	if to == "" {
		to = u.Address
	}
	ans, err := k.cmd("RCPT TO:<" + to + ">" + params)
	if err != nil {
		k.fail(err)
		l.s.log.Warn("proxy: LMTP back-end failed", "backend", host, "err", err)
		l.reply("451 4.3.0 mailbox temporarily unavailable, try again later")
		return
	}
	if strings.HasPrefix(ans, "2") {
		k.n++
		l.accepted = append(l.accepted, lmtpRcpt{addr: addr, link: k})
	}
	l.reply(ans)
}

// link returns the transaction on host's back-end, opening it (LHLO, MAIL) the first
// time; a failure stays, so the host's other recipients get 451 at once.
func (l *lmtpSession) link(ctx context.Context, host, addr string) *lmtpLink {
	if k := l.links[host]; k != nil {
		return k
	}
	if l.links == nil {
		l.links = map[string]*lmtpLink{}
	}
	k := &lmtpLink{host: host}
	l.links[host] = k
	if !l.s.health.up(addr) {
		k.err = errors.New("down (health check)")
		return k
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		l.s.health.failed(addr)
		k.fail(err)
		l.s.log.Warn("proxy: LMTP back-end unavailable", "backend", host, "addr", addr, "err", err)
		return k
	}
	k.conn, k.r, k.w = conn, bufio.NewReaderSize(conn, 4096), bufio.NewWriter(conn)
	// The greeting, LHLO and MAIL within ConnectTimeout (ctx's), as for IMAP and POP3: a
	// back-end that accepts connections but never greets (a hung machine) must not hold
	// the client until a health check or the 5 minutes of a command timeout.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	var lhlo string
	for _, step := range []struct{ cmd, want string }{{"", "220"}, {"LHLO " + l.s.cfg.Hostname, "250"}, {"MAIL", "250"}} {
		var ans string
		switch step.cmd {
		case "":
			ans, err = readReply(k.r)
		case "MAIL":
			ans, err = k.send1("MAIL " + mailFor(l.mail, lhlo))
		default:
			ans, err = k.send1(step.cmd)
			lhlo = ans
		}
		if err == nil && !strings.HasPrefix(ans, step.want) {
			err = fmt.Errorf("%q answered %.100q", step.cmd, ans)
		}
		if err != nil {
			k.fail(err)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				l.s.health.failed(addr)
			}
			l.s.log.Warn("proxy: LMTP back-end refused the transaction", "backend", host, "err", err)
			return k
		}
	}
	return k
}

func (k *lmtpLink) fail(err error) {
	k.err = err
	if k.conn != nil {
		k.conn.Close()
	}
}

// cmd sends a command and returns the reply (its last line, or the lines joined with
// CRLF for a multi-line one), within the command timeout.
func (k *lmtpLink) cmd(line string) (string, error) {
	k.conn.SetDeadline(time.Now().Add(lmtpCommandTimeout))
	return k.send1(line)
}

// send1 is cmd within the connection's current deadline.
func (k *lmtpLink) send1(line string) (string, error) {
	if _, err := k.w.WriteString(line + "\r\n"); err != nil {
		return "", err
	}
	if err := k.w.Flush(); err != nil {
		return "", err
	}
	return readReply(k.r)
}

// readReply reads an SMTP reply (RFC 5321 §4.2), its lines joined with CRLF.
func readReply(r *bufio.Reader) (string, error) {
	var lines []string
	for range 100 {
		l, err := readLine(r, 4096)
		if err != nil {
			return "", err
		}
		if len(l) < 3 || l[0] < '2' || l[0] > '5' {
			return "", fmt.Errorf("malformed reply %.100q", l)
		}
		lines = append(lines, l)
		if len(l) == 3 || l[3] == ' ' {
			return strings.Join(lines, "\r\n"), nil
		}
	}
	return "", errors.New("reply of too many lines")
}

// data reads the message and hands it to each back-end; false ends the session.
func (l *lmtpSession) data() bool {
	if l.mail == "" || len(l.accepted) == 0 {
		return l.reply("503 5.5.1 no valid recipients") == nil
	}
	if l.reply("354 go ahead, end with <CRLF>.<CRLF>") != nil {
		return false
	}
	// The message as the client sent it, dot-stuffed, with its final dot line: the
	// back-ends read it the same way.
	body := &lmtpBody{s: l.s}
	defer body.close()
	tooBig, spoolFailed := false, false
	// The end is a dot alone on a line (RFC 5321 §4.1.1.4): a fragment of a line longer
	// than the buffer is not a line, or a body could end the data early and have the
	// rest read as commands.
	lineStart := true
	for {
		l.conn.SetReadDeadline(time.Now().Add(lmtpCommandTimeout))
		line, err := l.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return false
		}
		if !tooBig && !spoolFailed {
			if body.size+int64(len(line)) > l.s.cfg.MaxMessageSize+3 {
				tooBig = true
				body.close()
			} else if werr := body.write(line); werr != nil {
				// The rest of the data is read and dropped, and every recipient gets
				// 451 after the final dot (RFC 2033 §4.2): a reply now would have the
				// rest of the message read as commands (smuggling another message).
				l.s.log.Error("proxy: LMTP spool", "err", werr)
				spoolFailed = true
				body.close()
			}
		}
		if err == nil && lineStart && (string(line) == ".\r\n" || string(line) == ".\n") {
			break
		}
		lineStart = err == nil
	}
	replies := make(map[*lmtpLink][]string)
	if tooBig {
		for _, r := range l.accepted {
			replies[r.link] = append(replies[r.link], "552 5.3.4 message too big")
		}
	} else if !spoolFailed {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, k := range l.links {
			if k.n == 0 || k.err != nil {
				continue
			}
			wg.Go(func() {
				ans := k.send(body.reader())
				mu.Lock()
				replies[k] = ans
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	// One reply per accepted recipient, in order (RFC 2033 §4.2).
	next := map[*lmtpLink]int{}
	var out []string
	for _, r := range l.accepted {
		ans := "451 4.3.0 mailbox temporarily unavailable, try again later"
		if rs := replies[r.link]; next[r.link] < len(rs) {
			ans = rs[next[r.link]]
		}
		next[r.link]++
		out = append(out, ans)
	}
	l.reset()
	return l.reply(strings.Join(out, "\r\n")) == nil
}

// send runs DATA on the link and returns one reply per recipient accepted on it (fewer
// when the back-end failed: the rest get 451 4.3.0).
func (k *lmtpLink) send(msg io.Reader) []string {
	ans, err := k.cmd("DATA")
	if err != nil || !strings.HasPrefix(ans, "354") {
		if err == nil && strings.HasPrefix(ans, "5") {
			out := make([]string, k.n)
			for i := range out {
				out[i] = ans
			}
			return out
		}
		k.fail(fmt.Errorf("DATA: %v %.100q", err, ans))
		return nil
	}
	k.conn.SetDeadline(time.Now().Add(lmtpCommandTimeout))
	if _, err := io.Copy(k.w, msg); err != nil {
		k.fail(err)
		return nil
	}
	if err := k.w.Flush(); err != nil {
		k.fail(err)
		return nil
	}
	var out []string
	for range k.n {
		ans, err := readReply(k.r)
		if err != nil {
			k.fail(err)
			break
		}
		out = append(out, ans)
	}
	return out
}

// lmtpBody is a message being relayed: in memory up to lmtpMemMessage octets while the
// proxy's memory budget (lmtpMemTotal) lasts, then in an unlinked temporary file, so
// that the memory of many sessions receiving large messages is bounded whatever
// max_message_size allows.
type lmtpBody struct {
	s        *Server
	mem      []byte
	reserved int64 // of the server's budget, given back by close
	f        *os.File
	size     int64
}

func (b *lmtpBody) write(p []byte) error {
	if b.f == nil {
		n := int64(len(p))
		if int64(len(b.mem))+n <= lmtpMemMessage {
			if b.s.lmtpMem.Add(n) <= lmtpMemTotal {
				b.reserved += n
				b.mem = append(b.mem, p...)
				b.size += n
				return nil
			}
			b.s.lmtpMem.Add(-n)
		}
		if err := b.spool(); err != nil {
			return err
		}
	}
	_, err := b.f.Write(p)
	b.size += int64(len(p))
	return err
}

// spool moves the message to a file, unlinked at once: nothing is left behind by a
// crash, and the space is freed when the file is closed.
func (b *lmtpBody) spool() error {
	f, err := os.CreateTemp(b.s.cfg.SpoolDir, "lmtp-proxy-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	b.f = f
	_, err = f.Write(b.mem)
	b.release()
	return err
}

func (b *lmtpBody) release() {
	b.s.lmtpMem.Add(-b.reserved)
	b.mem, b.reserved = nil, 0
}

// reader reads the message from its start; several may read at once (one per
// back-end).
func (b *lmtpBody) reader() io.Reader {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.size)
	}
	return bytes.NewReader(b.mem)
}

func (b *lmtpBody) close() {
	b.release()
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.size = 0
}

// mailFor is the MAIL argument for a back-end whose LHLO answer is lhlo: the
// reverse-path, and of the client's parameters (RFC 5321 §4.1.1.11) those of the
// extensions the back-end offers (BODY needs 8BITMIME, the others their own keyword).
func mailFor(arg, lhlo string) string {
	exts := map[string]bool{}
	for l := range strings.SplitSeq(lhlo, "\r\n") {
		if len(l) > 4 {
			kw, _, _ := strings.Cut(l[4:], " ")
			exts[strings.ToUpper(kw)] = true
		}
	}
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return arg
	}
	if strings.EqualFold(fields[0], "FROM:") && len(fields) > 1 { // "FROM: <a@b>"
		fields = append([]string{fields[0] + fields[1]}, fields[2:]...)
	}
	out := []string{fields[0]}
	for _, p := range fields[1:] {
		kw, _, _ := strings.Cut(strings.ToUpper(p), "=")
		if kw == "BODY" && exts["8BITMIME"] || kw != "BODY" && exts[kw] {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
