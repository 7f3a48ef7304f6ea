package imapd

import (
	"errors"
	"fmt"
	"sync"

	"github.com/portcullis-mail/portcullis/store"
)

// IDLE (RFC 2177) on the wire layer without a goroutine per idling connection: the
// connection's goroutine waits for DONE, and the selected mailbox's watcher starts a
// poll only when an event comes (store.Watcher.OnEvent). With thousands of phones in
// IDLE, a second goroutine each waiting on the watcher was a third of the memory of an
// idle connection (its stack grown by the SQLite calls of the first poll).

// idlePoller runs the session's polls while the connection idles: at most one at a
// time, and one more when events came during it.
type idlePoller struct {
	c  *wireConn
	wg sync.WaitGroup

	mu      sync.Mutex
	running bool
	again   bool
	stopped bool
	err     error
}

// kick asks for a poll; called by the watcher with its locks held, so it only starts one.
func (p *idlePoller) kick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.err != nil { // a failed poll ends the IDLE: nothing more to send
		return
	}
	if p.running {
		p.again = true
		return
	}
	p.running = true
	p.wg.Add(1)
	go p.run()
}

func (p *idlePoller) run() {
	defer p.wg.Done()
	for {
		err := p.poll()
		p.mu.Lock()
		first := err != nil && p.err == nil
		if first {
			p.err = err
		}
		if err != nil || !p.again || p.stopped {
			p.running = false
			p.mu.Unlock()
			if first {
				// The connection's goroutine is blocked reading DONE: end it. Not under
				// p.mu: closing TLS can block on the peer for seconds, and every store
				// write to the mailbox calls kick, which takes p.mu.
				p.c.NetConn().Close()
			}
			return
		}
		p.again = false
		p.mu.Unlock()
	}
}

func (p *idlePoller) poll() (err error) {
	defer func() {
		if v := recover(); v != nil {
			p.c.srv.rlog.Error("imap panic idling", "err", fmt.Sprint(v))
			err = errors.New("imapd: panic idling")
		}
	}()
	if err := p.c.sess.pollSelected(p.c.updates(), true); err != nil {
		return err
	}
	return p.c.flushOut()
}

// stop waits for a running poll and returns the first error of the polls.
func (p *idlePoller) stop() error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.wg.Wait()
	return p.err
}

// idleWait sends the selected mailbox's updates as they come until the client's line
// (DONE) arrives, and returns that line.
func (c *wireConn) idleWait() (string, error) {
	w := c.sess.selectedWatcher()
	if w == nil {
		return c.readLine(64) // nothing selected: nothing to tell
	}
	p := &idlePoller{c: c}
	w.OnEvent(p.kick)
	// What came before the watcher was hooked is sent now (readLine flushes it).
	if err := c.sess.pollSelected(c.updates(), true); err != nil {
		w.OnEvent(nil)
		return "", errors.Join(err, p.stop())
	}
	line, err := c.readLine(64)
	w.OnEvent(nil)
	if perr := p.stop(); perr != nil {
		return "", perr
	}
	return line, err
}

// selectedWatcher returns the selected mailbox's watcher, nil when none is selected.
func (s *session) selectedWatcher() *store.Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sel == nil {
		return nil
	}
	return s.sel.w
}
