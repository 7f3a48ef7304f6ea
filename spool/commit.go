package spool

import (
	"os"
	"sync"
)

// dirSyncer makes directory changes (renames, creates, unlinks) durable by fsyncing the
// directory. With group commit, callers that arrive while an fsync is running wait for the
// next one together, so N concurrent callers cost about two fsyncs instead of N: the same
// trick databases use for their write-ahead log.
type dirSyncer struct {
	dir   *os.File // nil for a syncer with its own fn
	fn    func() error
	group bool

	mu      sync.Mutex
	pending []chan error
	closed  bool
	kick    chan struct{} // capacity 1: "there is work"
	done    chan struct{} // closed when the committer goroutine ends
}

func newDirSyncer(path string, group bool) (*dirSyncer, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	s := newSyncer(d.Sync, group)
	s.dir = d
	return s, nil
}

// newSyncer returns a group committer around any sync function.
func newSyncer(fn func() error, group bool) *dirSyncer {
	s := &dirSyncer{fn: fn, group: group, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if group {
		go s.run()
	} else {
		close(s.done)
	}
	return s
}

var errChanPool = sync.Pool{New: func() any { return make(chan error, 1) }}

// sync returns once every change the caller made in the directory before calling it is on
// stable storage.
func (s *dirSyncer) sync() error {
	if !s.group {
		return s.fn()
	}
	ch := errChanPool.Get().(chan error)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		errChanPool.Put(ch)
		return os.ErrClosed
	}
	s.pending = append(s.pending, ch)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a kick is already queued; the committer will see our request
	}
	err := <-ch
	errChanPool.Put(ch)
	return err
}

// run is the committer: it takes every request queued so far and covers them all with one
// fsync. A request queued during that fsync leaves a kick behind and goes into the next
// batch, because its change may have come after the fsync started.
func (s *dirSyncer) run() {
	defer close(s.done)
	var spare []chan error // the previous batch's array, reused for the next pending list
	for range s.kick {
		s.mu.Lock()
		batch := s.pending
		if len(batch) > 0 {
			s.pending, spare = spare, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if len(batch) > 0 {
			err := s.fn()
			for _, ch := range batch {
				ch <- err
			}
			clear(batch)
			spare = batch[:0]
		}
		if closed {
			return
		}
	}
}

func (s *dirSyncer) close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already && s.group {
		// Either this kick gets queued or one is queued already; both are taken by the
		// committer after closed was set, so it serves the last batch and stops.
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	<-s.done
	if s.dir == nil {
		return nil
	}
	return s.dir.Close()
}
