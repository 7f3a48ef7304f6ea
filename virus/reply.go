package virus

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ReplyKind classifies one clamd reply line.
type ReplyKind int

// The reply kinds clamd sends to a scan command.
const (
	ReplyOK        ReplyKind = iota + 1 // "stream: OK"
	ReplyFound                          // "stream: NAME FOUND"
	ReplySizeLimit                      // "INSTREAM size limit exceeded. ERROR"
	ReplyError                          // "... ERROR" (any other error)
)

func (k ReplyKind) String() string {
	switch k {
	case ReplyOK:
		return "ok"
	case ReplyFound:
		return "found"
	case ReplySizeLimit:
		return "size-limit"
	case ReplyError:
		return "error"
	}
	return "reply(" + strconv.Itoa(int(k)) + ")"
}

// Reply is one parsed reply line of a scan command.
type Reply struct {
	Kind ReplyKind
	// ID is the request number clamd prefixes replies with inside an IDSESSION ("3: ..."),
	// 0 outside a session.
	ID uint64
	// Signature is the name of the matching signature for ReplyFound, as clamd sent it
	// (local databases append ".UNOFFICIAL"; never compare against a fixed list).
	Signature string
	// Message is the error text (without the trailing " ERROR") for ReplySizeLimit and
	// ReplyError.
	Message string
}

// MaxReplyLen bounds a reply line. clamd's longest replies (a path plus a signature name)
// are well under 1 KiB; a longer line means a confused peer.
const MaxReplyLen = 4096

// maxSignatureLen bounds a signature name; ClamAV's own limit is far below this.
const maxSignatureLen = 512

// ParseReply parses one clamd reply line to a scan command, without its terminator (NUL
// with the z command prefix, newline with the n prefix). It accepts the forms clamd 0.9x
// to 1.x send:
//
//	stream: OK
//	stream: Win.Test.EICAR_HDB-1 FOUND
//	stream: Can't allocate memory ERROR
//	INSTREAM size limit exceeded. ERROR
//	12: stream: OK                       (inside an IDSESSION)
//
// Any other line, an empty signature name, control characters or invalid UTF-8 are errors:
// the caller must treat the scan as failed, never as clean.
func ParseReply(line []byte) (Reply, error) {
	var r Reply
	if len(line) == 0 {
		return r, fmt.Errorf("clamd reply is empty")
	}
	if len(line) > MaxReplyLen {
		return r, fmt.Errorf("clamd reply is %d bytes long (limit %d)", len(line), MaxReplyLen)
	}
	if !utf8.Valid(line) {
		return r, fmt.Errorf("clamd reply %q is not valid UTF-8", truncate(line))
	}
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return r, fmt.Errorf("clamd reply %q contains a control character", truncate(line))
		}
	}
	rest := line
	// Session replies start with the request number: "N: ".
	if i := bytes.Index(rest, []byte(": ")); i > 0 && isDigits(rest[:i]) {
		id, err := strconv.ParseUint(string(rest[:i]), 10, 64)
		if err != nil {
			return r, fmt.Errorf("clamd reply %q: bad request number: %w", truncate(line), err)
		}
		r.ID = id
		rest = rest[i+2:]
	}
	switch {
	case bytes.HasSuffix(rest, []byte(" ERROR")):
		msg := bytes.TrimSuffix(rest, []byte(" ERROR"))
		// "stream: Can't allocate memory ERROR" names the stream; the size-limit reply
		// does not.
		msg = bytes.TrimPrefix(msg, []byte("stream: "))
		if len(bytes.TrimSpace(msg)) == 0 {
			return r, fmt.Errorf("clamd reply %q: error without a message", truncate(line))
		}
		r.Message = string(msg)
		r.Kind = ReplyError
		if bytes.Contains(msg, []byte("size limit exceeded")) {
			r.Kind = ReplySizeLimit
		}
		return r, nil
	case bytes.HasSuffix(rest, []byte(" FOUND")):
		name, ok := bytes.CutPrefix(bytes.TrimSuffix(rest, []byte(" FOUND")), []byte("stream: "))
		if !ok {
			return r, fmt.Errorf("clamd reply %q: FOUND without the stream: prefix", truncate(line))
		}
		if len(name) == 0 || len(name) > maxSignatureLen || len(bytes.TrimSpace(name)) != len(name) {
			return r, fmt.Errorf("clamd reply %q: bad signature name", truncate(line))
		}
		r.Kind, r.Signature = ReplyFound, string(name)
		return r, nil
	case bytes.Equal(rest, []byte("stream: OK")):
		r.Kind = ReplyOK
		return r, nil
	}
	return r, fmt.Errorf("clamd reply %q is not a scan result", truncate(line))
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 19 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// truncate shortens hostile input before it goes into an error message.
func truncate(b []byte) string {
	const n = 80
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
