package dkim

import (
	"errors"
	"fmt"
	"io"

	"github.com/portcullis-mail/portcullis/internal/mailheader"
)

// Limits on the header we read ourselves.
const (
	maxHeaderBytes  = 1 << 20
	maxHeaderFields = 1000
)

// readHeader reads the header section of the message in r (up to the empty line) and
// splits it into fields the way the rest of portcullis does (mailheader: lines that are
// no field are skipped). It accepts CRLF and LF line endings.
func readHeader(r io.Reader) ([]mailheader.Field, error) {
	block, err := mailheader.ReadBlock(r, maxHeaderBytes)
	if errors.Is(err, mailheader.ErrTooLong) {
		return nil, fmt.Errorf("header over %d bytes", maxHeaderBytes)
	}
	if err != nil {
		return nil, err
	}
	h := mailheader.Parse(nil, block, 0)
	if len(h.Fields) > maxHeaderFields {
		return nil, fmt.Errorf("more than %d header fields", maxHeaderFields)
	}
	return h.Fields, nil
}
