package milter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// maxPacket is the largest milter packet accepted: a body chunk is at most 64KiB (we
// negotiate no larger SMFIP_MDS_*), headers and macros less; 1MiB leaves room.
const maxPacket = 1 << 20

// guardConn reads whole milter packets — a 4-byte big-endian length, then that many
// bytes, the first of them the command — and checks each before go-milter sees it.
// go-milter v0.10.1 trusts what it reads: a zero-length packet, or a connect, helo,
// mail or rcpt packet whose string lacks its NUL, makes it index past the data (a
// panic in its own goroutine, which would end the whole process), and it allocates
// whatever length a peer announces up to 512MiB. Such a packet ends the connection
// with an error here instead.
type guardConn struct {
	net.Conn
	pending []byte // checked bytes not read yet
	buf     []byte
	err     error
}

func (g *guardConn) Read(p []byte) (int, error) {
	if len(g.pending) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if g.err = g.next(); g.err != nil {
			return 0, g.err
		}
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// next reads and checks one packet into pending.
func (g *guardConn) next() error {
	var hdr [4]byte
	if _, err := io.ReadFull(g.Conn, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxPacket {
		return g.bad("length %d (want 1 to %d)", n, maxPacket)
	}
	if cap(g.buf) < int(4+n) {
		g.buf = make([]byte, 4+n)
	}
	b := g.buf[:4+n]
	copy(b, hdr[:])
	if _, err := io.ReadFull(g.Conn, b[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := checkPacket(b[4], b[5:]); err != nil {
		return g.bad("%v", err)
	}
	g.pending = b
	return nil
}

func (g *guardConn) bad(format string, args ...any) error {
	g.Conn.Close()
	return fmt.Errorf("milter: bad packet from %s: %s", g.Conn.RemoteAddr(), fmt.Sprintf(format, args...))
}

// checkPacket checks what go-milter would index without checking (the Sendmail milter
// protocol, libmilter's mfdef.h and engine.c).
func checkPacket(cmd byte, data []byte) error {
	switch cmd {
	case 'C': // SMFIC_CONNECT: hostname NUL, family, [port(2), address NUL]
		i := bytes.IndexByte(data, 0)
		if i < 0 || i+1 >= len(data) {
			return fmt.Errorf("connect packet without host name or family")
		}
		if f := data[i+1]; (f == 'L' || f == '4' || f == '6') && len(data) < i+4 {
			return fmt.Errorf("connect packet without port")
		}
	case 'H', 'M', 'R': // SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT: strings ending with NUL
		if bytes.IndexByte(data, 0) < 0 {
			return fmt.Errorf("%c packet without NUL-terminated string", cmd)
		}
	}
	return nil
}
