package dkim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on the header we read ourselves.
const (
	maxHeaderBytes  = 1 << 20
	maxHeaderFields = 1000
)

type field struct{ name, value string }

// readHeader reads the header section (up to the empty line) into unfolded fields. It
// accepts CRLF and LF line endings.
func readHeader(r io.Reader) ([]field, error) {
	br := bufio.NewReaderSize(r, 4096)
	var (
		fields []field
		cur    strings.Builder
		n      int
	)
	flush := func() error {
		if cur.Len() == 0 {
			return nil
		}
		name, value, ok := strings.Cut(cur.String(), ":")
		cur.Reset()
		if !ok {
			return errors.New("header line without a colon")
		}
		if len(fields) >= maxHeaderFields {
			return fmt.Errorf("more than %d header fields", maxHeaderFields)
		}
		fields = append(fields, field{strings.TrimSpace(name), strings.TrimSpace(value)})
		return nil
	}
	for {
		line, err := br.ReadString('\n')
		n += len(line)
		if n > maxHeaderBytes {
			return nil, fmt.Errorf("header over %d bytes", maxHeaderBytes)
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			return fields, nil
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			cur.WriteString(" ")
			cur.WriteString(strings.TrimSpace(trimmed))
		} else {
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			cur.WriteString(trimmed)
		}
		if err == io.EOF {
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			return fields, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
