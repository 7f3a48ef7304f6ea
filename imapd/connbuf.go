package imapd

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Connection buffers. Most connections of a mail server wait: a phone's IDLE for new
// mail, a desktop client's second connection between checks. A 4 KiB read buffer and a
// 4 KiB write buffer each, held all along, were a quarter of the memory of an idle
// connection, so a connection takes them from pools when it reads or writes and gives
// them back as soon as they are empty: the writer after each response, the reader when it
// waits for the client's next command (or IDLE's DONE) with nothing buffered. The wait
// itself reads one byte into the connection (prefixReader), which then goes first.
//
// Responses are corked: each ends with a flush of the write buffer (enc.crlf), which goes
// to a corkWriter holding the bytes until the server waits for the client (waitInput, a
// continuation request, IDLE's updates) or holds more than corkMax. A command's untagged
// responses and its tagged reply go out in one write, not one per line: under imaptest's
// stress the write system calls were a quarter of the server's CPU time, and the client
// woke up for every segment.

const (
	connBufSize = 4096
	corkMax     = 16 << 10
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, connBufSize) }}
	corkPool   = sync.Pool{New: func() any { b := make([]byte, 0, corkMax); return &b }}
)

// corkWriter holds what is written to it until flush, or until it would exceed corkMax.
// Its buffer comes from a pool and goes back when flushed.
type corkWriter struct {
	w   io.Writer
	buf *[]byte
}

func (k *corkWriter) Write(p []byte) (int, error) {
	if k.buf != nil && len(*k.buf)+len(p) > corkMax {
		if err := k.flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= corkMax {
		return k.w.Write(p) // a message body streamed by FETCH goes straight through
	}
	if k.buf == nil {
		k.buf = corkPool.Get().(*[]byte)
	}
	*k.buf = append(*k.buf, p...)
	return len(p), nil
}

// flush writes out what is held.
func (k *corkWriter) flush() error {
	if k.buf == nil {
		return nil
	}
	b := k.buf
	k.buf = nil
	_, err := k.w.Write(*b)
	*b = (*b)[:0]
	corkPool.Put(b)
	return err
}

// flushOut sends the responses written so far: before the server waits for the client.
func (c *wireConn) flushOut() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *wireConn) flushLocked() error {
	if c.bw == nil && c.cork.buf == nil {
		return nil
	}
	c.NetConn().SetWriteDeadline(time.Now().Add(wireWriteTimeout))
	var err error
	if c.bw != nil {
		err = c.bw.Flush()
	}
	if ferr := c.cork.flush(); err == nil {
		err = ferr
	}
	c.releaseWriter()
	return err
}

// prefixReader is the stream with at most one byte already read from it in front. Every
// read from the stream sends the corked responses first (flush): whatever the server
// reads next (a command, a literal, DONE), the client may be waiting for them.
type prefixReader struct {
	r     io.Reader
	flush func() error
	b     [1]byte
	has   bool
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.has && len(b) > 0 {
		b[0] = p.b[0]
		p.has = false
		return 1, nil
	}
	if err := p.flush(); err != nil {
		return 0, err
	}
	return p.r.Read(b)
}

// waitInput blocks until the client sends something (within the read deadline) and
// leaves c.br set and given to the parser. While nothing is buffered it waits without
// a buffer.
func (c *wireConn) waitInput() error {
	if c.br != nil && (c.br.Buffered() > 0 || c.zw != nil) {
		// With COMPRESS the inflater holds the reader beneath: it stays (reads from the
		// stream still flush first).
		return nil
	}
	c.dropReader()
	for !c.r.has {
		n, err := c.r.Read(c.r.b[:]) // flushes, and a FETCH response's writer goes back
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
		if c.zw != nil {
			c.bw.Reset(c.zw) // COMPRESS: through the compressor into cork
		} else {
			c.bw.Reset(&c.cork)
		}
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
