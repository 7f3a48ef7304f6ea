package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/spool"
)

// errBareNewline reports a CR not followed by LF or an LF not preceded by CR in DATA.
var errBareNewline = errors.New("bare CR or LF in message")

var (
	// RFC 5321 §2.3.8 and §4.1.1.4: lines end with CRLF, and CR and LF must not appear
	// alone. Refusing them closes the SMTP smuggling hole of receivers that disagree on
	// where the data ends (CVE-2023-51764 and friends).
	replyBareNewline = policy.Reply{Code: 550, Enhanced: "5.6.0", Text: "Message contains a bare CR or LF, refused (RFC 5321 section 2.3.8)"}
	replyTooBig      = policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "Message size exceeds the limit"}
	replyLineTooLong = policy.Reply{Code: 500, Enhanced: "5.5.2", Text: "Line too long"}
	replyDataTimeout = policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Timeout during DATA, closing connection"}
	replyDataError   = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error reading the message"}
	replyNoMemory    = policy.Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage, try again later"}
	replyNoSpace     = policy.Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage"}
	replyQueueError  = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Queue write failed, try again later"}
)

// readMessage reads the message from go-smtp's dot-decoded DATA reader (or BDAT pipe)
// into w, refusing bare CR and bare LF; go-smtp bounds the size (smtp.ErrDataTooLarge).
// It stops at the first bare newline: where the data really ends is then uncertain
// (go-smtp itself misses the end marker in "\r\r\n.\r\n"), so the caller answers and
// closes the connection, as Postfix does. A write error of w is returned as it is.
func readMessage(r io.Reader, w io.Writer) error {
	if _, ok := r.(*io.PipeReader); ok {
		// BDAT chunks come through an io.Pipe, which returns what it has.
		return readChunks(r, w)
	}
	// go-smtp's DATA reader fills the whole buffer before it returns, so a bare newline
	// followed by a sequence it does not recognise as the end ("\r\r\n.\r\n") would
	// stall a big read until the timeout. One byte at a time, we see each byte as it comes;
	// they are handed to w in chunks.
	var one [1]byte
	var chunk [16 << 10]byte
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		_, err := w.Write(chunk[:n])
		n = 0
		return err
	}
	var crlf crlfOnly
	for {
		k, err := r.Read(one[:])
		if k == 1 {
			if err := crlf.check(one[:]); err != nil {
				return err
			}
			chunk[n] = one[0]
			if n++; n == len(chunk) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			if err := crlf.end(); err != nil {
				return err
			}
			return flush()
		}
		if err != nil {
			return err
		}
	}
}

func readChunks(r io.Reader, w io.Writer) error {
	var chunk [32 << 10]byte
	var crlf crlfOnly
	for {
		n, err := r.Read(chunk[:])
		p := chunk[:n]
		if err := crlf.check(p); err != nil {
			return err
		}
		if _, werr := w.Write(p); werr != nil {
			return werr
		}
		if err == io.EOF {
			return crlf.end()
		}
		if err != nil {
			return err
		}
	}
}

// crlfOnly checks the line ends of a message as it passes, in pieces of any size: every
// CR followed by LF, every LF preceded by CR.
type crlfOnly struct{ prevCR bool }

// check returns errBareNewline at the first CR without LF, or LF without CR, in p.
func (c *crlfOnly) check(p []byte) error {
	for _, b := range p {
		if c.prevCR != (b == '\n') {
			return errBareNewline
		}
		c.prevCR = b == '\r'
	}
	return nil
}

// end returns errBareNewline when the message ended with a CR.
func (c *crlfOnly) end() error {
	if c.prevCR {
		return errBareNewline
	}
	return nil
}

// received is a message read and judged at the data stage, ready to be queued or
// delivered. It holds its share of Config.MaxDataMemory until release.
type received struct {
	id     string // the session's message id, for logs
	raw    []byte
	at     time.Time
	env    spool.Envelope
	header string // trace and policy header fields to prepend
	start  time.Time
	buf    *msgBuf
}

// release gives back the message's memory (and removes its temporary file): call it once
// the queue or the mailbox has the message.
func (m *received) release() { m.buf.close() }

// receive is the DATA/BDAT path shared by SMTP and LMTP: read the message (bare CR/LF
// refused, large messages to a temporary file), reserve the memory of the data stage,
// prepare the message, run the data stage, and build the envelope. A nil received
// comes with the reply to give (a rejection, a tempfail, or 250 for a discarded
// message). It always returns holding st.mu; the caller unlocks, and releases the
// received.
func (st *connState) receive(r io.Reader, proto string) (*received, error) {
	st.mu.Lock()
	if err := st.command(); err != nil {
		return nil, err
	}
	// The id first: a message refused while it arrives (too big, bare LF) is one
	// transaction in the decision log too.
	st.msgSeq++
	msgID := st.tx.Conn.ID + "." + strconv.Itoa(st.msgSeq)
	st.curMsg = msgID
	st.mu.Unlock()
	// Read without holding st.mu: with BDAT, go-smtp runs Data in its own goroutine
	// while it goes on reading commands (AUTH, RSET) that take the lock.
	start := time.Now()
	st.nc.setData(start.Add(st.srv.cfg.DataTimeout))
	buf := newMsgBuf(st.srv.mem, st.srv.tempFile)
	kept := false
	defer func() {
		if !kept {
			buf.close()
		}
	}()
	err := readMessage(r, buf)
	st.nc.setData(time.Time{})
	if err == nil && st.tap.bad.Load() {
		err = errBareNewline
	}
	st.mu.Lock()
	if err != nil {
		st.inTxn.Store(false)
		return nil, st.dataReadError(err)
	}
	receivedAt := time.Now()
	st.curSize = buf.size
	name := st.l.cfg.Name

	prepare := st.srv.deps.PrepareMessage
	cost := dataCost(buf.size, prepare != nil)
	wctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.PolicyTimeout)
	raw, err := buf.load(wctx, cost)
	cancel()
	if err != nil {
		st.inTxn.Store(false)
		st.srv.m.message(name, "tempfailed")
		if errors.Is(err, errNoMemory) {
			st.srv.log.Warn(proto+" message refused: message memory budget (max_data_memory) exhausted", "id", msgID,
				"client_ip", st.tx.Conn.IP.String(), "size", buf.size, "need", cost, "budget", int64(st.srv.cfg.MaxDataMemory))
			return nil, st.refuse(policy.StageData, replyNoMemory, "memory_budget")
		}
		st.srv.log.Error(proto+" message refused: temporary file", "id", msgID, "client_ip", st.tx.Conn.IP.String(), "err", err)
		return nil, st.refuse(policy.StageData, replyNoSpace, "temp_file")
	}
	if err := st.checkHeaderSize(raw); err != nil {
		return nil, err
	}

	if prepare != nil {
		out, err := prepare(st.ctx, st.tx, raw)
		if err != nil {
			st.srv.log.Error(proto+" prepare message failed", "id", msgID, "err", err)
			return nil, st.refuse(policy.StageData, replyDataError, "prepare_error")
		}
		if sameBytes(out, raw) {
			buf.res.shrink(dataCost(buf.size, false)) // no copy was made
		}
		raw = out
		buf.keep(raw)
	}
	st.tx.Message = policy.NewMessage(raw, receivedAt)
	d := st.evaluate(policy.StageData)
	if d.Terminal() {
		outcome := "rejected"
		if d.Verdict != policy.Reject {
			outcome = "tempfailed"
		}
		st.srv.m.message(name, outcome)
		st.decided(policy.StageData, d, replyOf(d).String(), nil, "")
		return nil, st.fail(policy.StageData, replyOf(d))
	}
	if len(st.milters) > 0 {
		var out []byte
		d, out = st.milterMessage(d, raw)
		if d.Terminal() {
			outcome := "rejected"
			if d.Verdict != policy.Reject {
				outcome = "tempfailed"
			}
			st.srv.m.message(name, outcome)
			st.decided(policy.StageData, d, replyOf(d).String(), nil, "")
			return nil, st.fail(policy.StageData, replyOf(d))
		}
		if !sameBytes(out, raw) {
			raw = out
			buf.keep(raw)
		}
	}
	st.txnDec = append(st.txnDec, d)
	verdict, headers, tags, score := st.finalVerdict()
	if verdict == policy.Discard {
		st.srv.m.message(name, "discarded")
		st.srv.m.reply(name, "data", 250)
		st.srv.log.Info(proto+" message discarded", "id", msgID, "client_ip", st.tx.Conn.IP.String(), "from", st.tx.Envelope.From.String(), "rcpts", joinAddrs(st.tx.Envelope.Rcpts))
		reply := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK id=" + msgID}
		st.decided(policy.StageData, st.verdictDecision(policy.Discard), "250 2.0.0 "+reply.Message, nil, "")
		return nil, reply
	}
	env := spool.Envelope{
		From:       st.tx.Envelope.From.String(),
		To:         make([]string, len(st.tx.Envelope.Rcpts)),
		ReceivedAt: receivedAt,
		Listener:   name,
		HELO:       st.tx.Conn.HELO,
		AuthUser:   st.tx.Conn.AuthUser,
		Quarantine: verdict == policy.Quarantine,
		Tags:       tags,
		Score:      score,
	}
	if st.tx.Envelope.From.IsNull() {
		env.From = ""
	}
	if st.tx.Conn.IP.IsValid() {
		env.ClientIP = st.tx.Conn.IP.String()
	}
	for i, a := range st.tx.Envelope.Rcpts {
		env.To[i] = a.String()
	}
	kept = true
	return &received{id: msgID, raw: raw, at: receivedAt, env: env, header: st.traceHeaders(msgID, headers, receivedAt), start: start, buf: buf}, nil
}

// sameBytes reports whether a and b are the same slice (PrepareMessage returned its
// input unchanged).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (s *session) Data(r io.Reader) error {
	st := s.st
	m, err := st.receive(r, "smtp")
	defer st.mu.Unlock()
	if m == nil {
		return err
	}
	defer m.release()
	msgID, raw, receivedAt, env, hdr, start := m.id, m.raw, m.at, m.env, m.header, m.start
	ctx, cancel := context.WithTimeout(st.ctx, st.srv.cfg.QueueTimeout)
	id, err := st.srv.deps.Spool.Enqueue(ctx, env, io.MultiReader(strings.NewReader(hdr), bytes.NewReader(raw)))
	cancel()
	st.srv.m.observe("enqueue", time.Since(receivedAt).Seconds())
	if errors.Is(err, spool.ErrTooLarge) {
		st.srv.m.message(st.l.cfg.Name, "rejected")
		return st.refuse(policy.StageData, replyTooBig, "too_big")
	}
	if err != nil {
		st.srv.log.Error("smtp enqueue failed", "id", msgID, "err", err)
		st.srv.m.message(st.l.cfg.Name, "tempfailed")
		return st.refuse(policy.StageData, replyQueueError, "queue_error")
	}
	st.messagesN.Add(1)
	outcome := "queued"
	if env.Quarantine {
		outcome = "quarantined"
	}
	st.srv.m.message(st.l.cfg.Name, outcome)
	st.srv.m.reply(st.l.cfg.Name, "data", 250)
	st.srv.log.Info("smtp message queued", "id", msgID, "queue_id", id, "client_ip", st.tx.Conn.IP.String(),
		"from", env.From, "rcpts", env.To, "size", len(raw), "quarantine", env.Quarantine,
		"duration_ms", time.Since(start).Milliseconds())
	st.evaluate(policy.StageQueued)
	d := policy.Decision{Stage: policy.StageData, Verdict: policy.Accept}
	if env.Quarantine {
		d = st.verdictDecision(policy.Quarantine)
	}
	st.decided(policy.StageData, d, "250 2.0.0 OK queued as "+id, nil, id)
	// go-smtp turns an *SMTPError into the reply as it is, a 250 included.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

func (st *connState) dataReadError(err error) error {
	switch {
	case errors.Is(err, errBareNewline):
		st.srv.m.message(st.l.cfg.Name, "rejected")
		st.nc.killed.Store(true) // answer, then close: the rest is not read as commands
		return st.refuse(policy.StageData, replyBareNewline, "bare_newline")
	case errors.Is(err, smtp.ErrDataTooLarge):
		st.srv.m.message(st.l.cfg.Name, "rejected")
		return st.refuse(policy.StageData, replyTooBig, "too_big")
	case errors.Is(err, smtp.ErrTooLongLine):
		st.nc.killed.Store(true) // go-smtp closes the connection anyway
		return st.refuse(policy.StageData, replyLineTooLong, "line_too_long")
	case errors.Is(err, smtp.ErrDataReset):
		return err
	case isTimeout(err):
		st.nc.killed.Store(true)
		return st.refuse(policy.StageData, replyDataTimeout, "data_timeout")
	}
	st.nc.killed.Store(true)
	st.srv.log.Info("smtp DATA read failed", "id", st.tx.Conn.ID, "client_ip", st.tx.Conn.IP.String(), "err", err)
	return smtpError(replyDataError)
}

// traceHeaders returns the header fields we prepend: the policies' and rules' headers,
// then our Received field (RFC 5321 §4.4, with the RFC 3848 protocol keyword), newest on
// top.
func (st *connState) traceHeaders(msgID string, headers []policy.Header, at time.Time) string {
	var b strings.Builder
	for _, h := range headers {
		h, ok := h.Clean()
		if !ok {
			continue
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	c := st.tx.Conn
	proto := "ESMTP"
	if st.l.cfg.Mode == ModeLMTP {
		proto = "LMTP" // RFC 3848 §2
	}
	if c.TLS {
		proto += "S"
	}
	if c.AuthUser != "" {
		proto += "A"
	}
	rdns := c.Hostname
	if rdns == "" {
		rdns = "unknown"
	}
	peer := fmt.Sprintf("%s [%s]", commentSafe(rdns), c.IP)
	if !c.IP.IsValid() {
		peer = "local unix socket" // an lmtp listener's unix socket has no peer address
	}
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (portcullis) with %s id %s",
		commentSafe(c.HELO), peer, st.srv.cfg.Hostname, proto, msgID)
	if c.TLS {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", c.TLSVer, c.TLSCipher)
	}
	if len(st.tx.Envelope.Rcpts) == 1 {
		// Only one: naming every recipient would disclose Bcc recipients.
		fmt.Fprintf(&b, "\r\n\tfor <%s>", commentSafe(st.tx.Envelope.Rcpts[0].String()))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", at.Format(time.RFC1123Z))
	return b.String()
}

// commentSafe keeps printable ASCII without the characters that would end a comment or
// the header.
func commentSafe(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == '(' || r == ')' || r == '\\' || r == ';' {
			return '_'
		}
		return r
	}, s)
}
