package connlimit

import (
	"net"
	"sync"
)

// Group is what a server must hold to shut down: its listeners and its open connections.
// Close closes them all and waits for the sessions to return. The zero Group is ready to
// use. Servers keep their own locks for everything else.
type Group struct {
	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Listen records ln until Unlisten; false when the group is closed (the caller then
// returns net.ErrClosed without serving).
func (g *Group) Listen(ln net.Listener) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.lns == nil {
		g.lns = map[net.Listener]struct{}{}
	}
	g.lns[ln] = struct{}{}
	return true
}

// Unlisten forgets ln (its Serve returned).
func (g *Group) Unlisten(ln net.Listener) {
	g.mu.Lock()
	delete(g.lns, ln)
	g.mu.Unlock()
}

// Closed reports whether Close was called: an Accept error after it is the end of Serve,
// not a failure.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Go runs serve in a goroutine with c recorded until it returns; false (nothing run, c
// left to the caller) when the group is closed.
func (g *Group) Go(c net.Conn, serve func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	if g.conns == nil {
		g.conns = map[net.Conn]struct{}{}
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		defer func() {
			g.mu.Lock()
			delete(g.conns, c)
			g.mu.Unlock()
		}()
		serve()
	}()
	return true
}

// Close stops the listeners, closes the open connections and waits for their sessions.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	for ln := range g.lns {
		ln.Close()
	}
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}
