// Package groupsync makes changes durable with group commit, the trick databases use for
// their write-ahead log: callers that ask for an fsync while one is running wait for the
// next one together, so N concurrent callers cost about two fsyncs instead of N. The
// spool (its queue and status directories and its message log) and the maildirs of the
// mail store use it.
//
// A Syncer wraps a function that makes earlier changes durable (an fsync of a directory,
// fdatasyncs of the files written). Sync returns once a call of it that started after
// Sync was called has finished, with that call's result: a call already running when
// Sync is called may have started before the caller's change, so it does not count.
// A caller that finds no call running makes one itself, at once; callers that arrive
// during a call wait for the next one, which a committer goroutine makes as soon as the
// running call ends, back to back while callers keep coming. The committer ends when
// none waits, so an idle Syncer holds no goroutine and needs no Close.
package groupsync

import (
	"os"
	"sync"
)

// Syncer runs a sync function for concurrent callers, one call at a time, each call
// serving every caller that was waiting when it started. Make one with New.
type Syncer struct {
	fn func() error

	mu      sync.Mutex
	running bool          // a call of fn is running
	next    *round        // the callers waiting for the next call; nil when none
	started uint64        // calls of fn started
	closed  bool          // Sync refuses new callers
	idle    chan struct{} // closed when no call runs any more, for Close
}

// round is the callers served by one call of fn.
type round struct {
	done    chan struct{} // closed when the call has ended
	err     error         // its result, set before done is closed
	callers int
}

// New returns a Syncer around fn.
func New(fn func() error) *Syncer { return &Syncer{fn: fn} }

// Sync returns the result of a call of the sync function that started after Sync was
// called. After Close it returns os.ErrClosed.
func (s *Syncer) Sync() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return os.ErrClosed
	}
	if !s.running {
		// Nothing running: call fn here, without a goroutine switch.
		s.running = true
		s.started++
		s.mu.Unlock()
		err := s.fn()
		s.mu.Lock()
		if s.next != nil {
			go s.commit() // callers arrived meanwhile: serve them, and return now
		} else {
			s.stop()
		}
		s.mu.Unlock()
		return err
	}
	// The running call may have started before the caller's change: wait for the next.
	r := s.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		s.next = r
	}
	r.callers++
	s.mu.Unlock()
	<-r.done
	return r.err
}

// commit is the committer while callers keep arriving: it serves every round with one
// call each, back to back, and ends when no caller waits.
func (s *Syncer) commit() {
	for {
		s.mu.Lock()
		r := s.next
		if r == nil {
			s.stop()
			s.mu.Unlock()
			return
		}
		s.next = nil
		s.started++
		s.mu.Unlock()
		r.err = s.fn()
		close(r.done)
	}
}

// stop marks the Syncer idle; s.mu is held.
func (s *Syncer) stop() {
	s.running = false
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// Calls returns how many calls of the sync function have started: with n callers it is
// between 1 and n.
func (s *Syncer) Calls() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Close waits for the callers inside Sync to be served and makes later calls of Sync
// return os.ErrClosed, so that the caller may then close what the sync function uses.
func (s *Syncer) Close() {
	s.mu.Lock()
	s.closed = true
	if !s.running {
		s.mu.Unlock()
		return
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	<-idle
}
