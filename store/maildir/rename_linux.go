package maildir

import (
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace moves from to to unless to exists (fs.ErrExist then). Other errors,
// such as EINVAL from a file system without RENAME_NOREPLACE, send the caller to link.
func renameNoReplace(from, to string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "renameat2", Old: from, New: to, Err: err}
	}
	return nil
}
