package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CreateTemp returns an anonymous file in the spool's file system, for a message that is
// still arriving (the SMTP server writes large messages there while they come in). It is
// unlinked at once: it goes away when closed, and with the process; a crash between the
// two steps leaves a file in tmp/, which Open removes.
func (s *Spool) CreateTemp() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "incoming-*")
	if err != nil {
		return nil, fmt.Errorf("spool: temporary file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: temporary file: %w", err)
	}
	return f, nil
}

// FreeSpace returns the bytes that the spool's file system has free for unprivileged
// users (statfs f_bavail): what the SMTP server checks before it takes a message
// (Postfix's queue_minfree).
func (s *Spool) FreeSpace() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return 0, fmt.Errorf("spool: statfs %s: %w", s.dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
