package proxy

import (
	"context"
	"net"
	"sync"
)

// PipeListener is an in-memory listener through which the proxy reaches this process's
// own IMAP, POP3 or ManageSieve server (Config.ProxyMaybe): a user whose mail host is
// this node is served here, with no network hop and no second TLS. The server serves it
// like any listener, behind proxylisten.Wrap(l, nil): each connection starts with the
// proxy's PROXY header naming the client.
type PipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewPipeListener returns an open PipeListener.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the server's end of the next connection.
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and DialContext.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr names the listener.
func (l *PipeListener) Addr() net.Addr { return pipeAddr{} }

// DialContext opens a connection to the server and returns the proxy's end.
func (l *PipeListener) DialContext(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "local" }

// Local are this process's own servers, for ProxyMaybe; a nil one is not served here.
type Local struct {
	IMAP, POP3, ManageSieve *PipeListener
}
