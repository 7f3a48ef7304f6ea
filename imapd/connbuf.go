package imapd

import (
	"bufio"
	"io"
	"sync"
)

// Connection buffers. Most connections of a mail server wait: a phone's IDLE for new
// mail, a desktop client's second connection between checks. A 4 KiB read buffer and a
// 4 KiB write buffer each, held all along, were a quarter of the memory of an idle
// connection, so a connection takes them from pools when it reads or writes and gives
// them back as soon as they are empty: the writer after each response, the reader when it
// waits for the client's next command (or IDLE's DONE) with nothing buffered. The wait
// itself reads one byte into the connection (prefixReader), which then goes first.

const connBufSize = 4096

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, connBufSize) }}
)

// prefixReader is the stream with at most one byte already read from it in front.
type prefixReader struct {
	r   io.Reader
	b   [1]byte
	has bool
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.has && len(b) > 0 {
		b[0] = p.b[0]
		p.has = false
		return 1, nil
	}
	return p.r.Read(b)
}

// waitInput blocks until the client sends something (within the read deadline) and
// leaves c.br set and given to the parser. While nothing is buffered it waits without
// a buffer.
func (c *wireConn) waitInput() error {
	if c.br != nil && c.br.Buffered() > 0 {
		return nil
	}
	c.dropReader()
	c.wmu.Lock()
	c.releaseWriter() // a FETCH response leaves it for the next write
	c.wmu.Unlock()
	for !c.r.has {
		n, err := c.r.r.Read(c.r.b[:])
		if n == 1 {
			c.r.has = true
			break
		}
		if err != nil {
			return err
		}
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.r)
	c.p.SetReader(c.br)
	return nil
}

// dropReader gives the read buffer back, with whatever it holds.
func (c *wireConn) dropReader() {
	if c.br == nil {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
	if c.p != nil {
		c.p.SetReader(nil)
	}
}

// writer returns the write buffer, taking one when the connection has none; called
// with wmu held.
func (c *wireConn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.w)
	}
	return c.bw
}

// releaseWriter gives the write buffer back when it is empty (every response ends with
// a flush; one that failed keeps what it could not write); called with wmu held.
func (c *wireConn) releaseWriter() {
	if c.bw == nil || c.bw.Buffered() > 0 {
		return
	}
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	c.bw = nil
}
