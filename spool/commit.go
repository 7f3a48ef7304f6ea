package spool

import (
	"os"

	"github.com/portcullis-mail/portcullis/internal/groupsync"
)

// dirSync makes directory changes (renames, creates, unlinks) durable by fsyncing the
// directory. With group commit (internal/groupsync), callers that arrive while an fsync
// is running wait for the next one together, so N concurrent callers cost about two
// fsyncs instead of N.
type dirSync struct {
	dir   *os.File
	group *groupsync.Syncer // nil without group commit: each caller fsyncs on its own
}

func openDirSync(path string, group bool) (*dirSync, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	s := &dirSync{dir: d}
	if group {
		s.group = groupsync.New(d.Sync)
	}
	return s, nil
}

// sync returns once every change the caller made in the directory before calling it is on
// stable storage.
func (s *dirSync) sync() error {
	if s.group == nil {
		return s.dir.Sync()
	}
	return s.group.Sync()
}

// close waits for the callers being served, then closes the directory.
func (s *dirSync) close() error {
	if s.group != nil {
		s.group.Close()
	}
	return s.dir.Close()
}
