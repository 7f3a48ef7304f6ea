package imapd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
)

// spoolFile returns an anonymous file in os.TempDir() (created, then unlinked at once, so
// that a crash leaves nothing behind) for a message the client is still sending.
func spoolFile() (*os.File, error) {
	f, err := os.CreateTemp("", "imapd-append-*")
	if err != nil {
		return nil, fmt.Errorf("imapd: spool file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("imapd: spool file: %w", err)
	}
	return f, nil
}

// binaryAppend is the message of an APPEND with a literal8 (RFC 3516 §4.2) as it is
// stored: every leaf entity whose Content-Transfer-Encoding is binary has its body
// encoded in base64 and its header saying so, as Dovecot stores it. The store keeps
// messages as lines (a file with bare LFs is served with CRLF), and IMAP cannot send a
// NUL in BODY[]; in base64 the bytes survive, and BINARY[part] gives them back exactly.
// Entities of other encodings are kept byte for byte. The literal is first spooled to
// a temporary file: only once the client has sent all of it is the message read into
// memory, within the server's memory budget (Config.FetchMemory), for the length of the
// APPEND. Held from the literal's announce, the budget waited on the client: one that
// announced a large literal8 and sent nothing kept every other session's FETCH waiting.
func (s *session) binaryAppend(r io.Reader, size int64) (out []byte, release func(), err error) {
	f, err := spoolFile()
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if n, err := io.Copy(f, r); err != nil || n != size {
		return nil, nil, fmt.Errorf("%w: reading the literal8: %d of %d octets: %w", wire.ErrIO, n, size, cmp.Or(err, io.ErrUnexpectedEOF))
	}
	return s.binarySpooled(f, size)
}

// binarySpooled is binaryAppend's conversion of the size octets spooled in f, read into
// memory within the server's memory budget: release gives it back.
func (s *session) binarySpooled(f io.ReaderAt, size int64) (out []byte, release func(), err error) {
	release, err = s.srv.mem.acquire(context.Background(), 3*size)
	if err != nil {
		return nil, nil, err
	}
	msg := make([]byte, size)
	if _, err := f.ReadAt(msg, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		release()
		return nil, nil, fmt.Errorf("imapd: reading the spooled message: %w", err)
	}
	out, err = binaryToBase64(msg)
	if err != nil {
		release()
		return nil, nil, err
	}
	return out, release, nil
}

// binaryToBase64 returns msg with the body of every leaf entity whose
// Content-Transfer-Encoding is binary in base64 (msg itself when it has none).
func binaryToBase64(msg []byte) ([]byte, error) {
	t, _, err := parseTree(bytes.NewReader(msg), false, pos{})
	if err != nil {
		return nil, err
	}
	var leaves []*part
	var walk func(p *part)
	walk = func(p *part) {
		switch {
		case len(p.children) > 0:
			for _, c := range p.children {
				walk(c)
			}
		case p.msg != nil:
			walk(p.msg)
		case !strings.HasPrefix(p.mediaType, "multipart/") &&
			strings.EqualFold(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding")), "binary"):
			leaves = append(leaves, p)
		}
	}
	walk(t.root)
	if len(leaves) == 0 {
		return msg, nil
	}
	size := int64(len(msg))
	out := make([]byte, 0, size+size/3+size/38+64*int64(len(leaves)))
	last := int64(0)
	for _, p := range leaves {
		out = append(out, msg[last:p.hdr.f]...)
		out = appendBase64Header(out, msg[p.hdr.f:p.body.f], p.blank)
		out = appendBase64Lines(out, msg[p.body.f:p.end.f])
		last = p.end.f
	}
	return append(out, msg[last:]...), nil
}

// appendBase64Header appends the header hdr (its fields and, when blank, the empty line
// that ends it) without its Content-Transfer-Encoding fields and with one saying base64.
func appendBase64Header(out, hdr []byte, blank bool) []byte {
	var fields [][]byte // each field with its continuation lines and line ends
	for len(hdr) > 0 {
		i := bytes.IndexByte(hdr, '\n') + 1
		if i == 0 {
			i = len(hdr)
		}
		line := hdr[:i]
		hdr = hdr[i:]
		if blank && len(hdr) == 0 && len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the empty line
		}
		if len(fields) > 0 && (line[0] == ' ' || line[0] == '\t') {
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
			continue
		}
		fields = append(fields, bytes.Clone(line))
	}
	for _, f := range fields {
		name, _, _ := bytes.Cut(f, []byte(":"))
		if strings.EqualFold(string(bytes.TrimSpace(name)), "Content-Transfer-Encoding") {
			continue
		}
		out = append(out, f...)
		if !bytes.HasSuffix(f, []byte("\n")) {
			out = append(out, '\r', '\n')
		}
	}
	out = append(out, "Content-Transfer-Encoding: base64\r\n\r\n"...)
	return out
}

// appendBase64Lines appends b in base64, in lines of 76 characters (RFC 2045 §6.8)
// separated by CRLF; the line end after the last is the delimiter's, or none at the end
// of the message.
func appendBase64Lines(out, b []byte) []byte {
	const perLine = 57 // bytes per 76 characters
	for i := 0; i < len(b); i += perLine {
		if i > 0 {
			out = append(out, '\r', '\n')
		}
		out = base64.StdEncoding.AppendEncode(out, b[i:min(i+perLine, len(b))])
	}
	return out
}
