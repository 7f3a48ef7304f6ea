package milter_test

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/milter"
)

// pipeListener hands out the server ends of net.Pipe connections.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

// FuzzPackets feeds arbitrary bytes after a valid negotiation to the server: it must
// neither panic (go-milter's goroutines have no recover: a panic ends the process) nor
// hang.
func FuzzPackets(f *testing.F) {
	f.Add(packet('C', "host\x004\x00\x19127.0.0.1\x00"))
	f.Add(packet('C', "host"))
	f.Add(append(packet('M', "<a@b>\x00SIZE=1\x00"), packet('R', "<c@d>\x00")...))
	f.Add(append(packet('L', "Subject\x00hi\x00"), packet('N', "")...))
	f.Add(append(packet('B', "body\r\n"), packet('E', "")...))
	f.Add(packet('D', "Cj\x00mx\x00"))
	f.Add([]byte{0, 0, 0, 0})
	eng, _ := newEngine(f)
	s, err := milter.New(milter.Config{IdleTimeout: 5 * time.Second}, milter.Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	go s.Serve(ln)
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		ln.conns <- server
		client.SetDeadline(time.Now().Add(10 * time.Second))
		go io.Copy(io.Discard, client)
		client.Write(append(optneg(), in...))
		client.Write(packet('Q', ""))
	})
}
