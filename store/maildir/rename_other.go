//go:build !linux

package maildir

import "errors"

// renameNoReplace is not available here; the caller links instead.
func renameNoReplace(from, to string) error { return errors.ErrUnsupported }
