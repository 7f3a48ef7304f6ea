package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Request is one policy-delegation request: its attributes by name (SMTPD_POLICY_README,
// "Protocol description"), e.g. "protocol_state" → "RCPT".
type Request map[string]string

// Limits bound what ReadRequest accepts.
type Limits struct {
	// MaxLine is the longest attribute line ("name=value"), without its newline.
	MaxLine int
	// MaxAttributes is the most attributes in one request.
	MaxAttributes int
}

// ErrMalformed is wrapped by every error of a request that breaks the protocol.
var ErrMalformed = errors.New("malformed policy request")

// ReadRequest reads one request: lines "name=value" ending with an empty line. It
// returns io.EOF when the stream ends cleanly before a request begins, and an error
// wrapping ErrMalformed (or io.ErrUnexpectedEOF) for a line longer than lim.MaxLine, too
// many attributes, a line without "=", an empty name, a NUL byte, a repeated name or a
// stream that ends in the middle. br must buffer at least lim.MaxLine+2 bytes (a line
// longer than its buffer is refused, never accumulated). A CR before the newline is
// dropped (tools that speak CRLF); Postfix sends bare LF.
func ReadRequest(br *bufio.Reader, lim Limits) (Request, error) {
	req := Request{}
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%w: attribute line %d longer than %d bytes", ErrMalformed, n+1, lim.MaxLine)
		case err == io.EOF && len(line) == 0 && n == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, fmt.Errorf("%w: the stream ended before the empty line that ends a request: %w", ErrMalformed, io.ErrUnexpectedEOF)
		case err != nil:
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) == 0 {
			if n == 0 {
				return nil, fmt.Errorf("%w: an empty request", ErrMalformed)
			}
			return req, nil
		}
		if len(line) > lim.MaxLine {
			return nil, fmt.Errorf("%w: attribute line %d longer than %d bytes", ErrMalformed, n+1, lim.MaxLine)
		}
		if n >= lim.MaxAttributes {
			return nil, fmt.Errorf("%w: more than %d attributes", ErrMalformed, lim.MaxAttributes)
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("%w: attribute line %d holds a NUL byte", ErrMalformed, n+1)
		}
		name, value, ok := bytes.Cut(line, []byte{'='})
		if !ok || len(name) == 0 {
			return nil, fmt.Errorf("%w: attribute line %d is not name=value: %.40q", ErrMalformed, n+1, line)
		}
		k := string(name)
		if _, dup := req[k]; dup {
			return nil, fmt.Errorf("%w: attribute %.40q given twice", ErrMalformed, k)
		}
		req[k] = string(value)
	}
}
