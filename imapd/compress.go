package imapd

import (
	"bufio"
	"io"

	"github.com/klauspost/compress/flate"

	"github.com/portcullis-mail/portcullis/imapd/internal/inflate"
	"github.com/portcullis-mail/portcullis/imapd/internal/wire"
)

// compress answers COMPRESS DEFLATE (RFC 4978): after the OK both directions are raw
// DEFLATE streams (RFC 1951). What the client sends is decoded by imapd/internal/inflate,
// which hands over each flush's data without waiting for more input (Go's compress/flate
// and klauspost/compress's decoders both held back the end of mbsync's Z_PARTIAL_FLUSH
// writes: see that package). It reads the connection's buffered reader byte by byte and
// holds a 32 KiB window. A stream that inflates to junk is bounded by the parser (a line
// over 16 times MaxLine closes the connection) and by DEFLATE itself (at most about 1032
// bytes per byte). What the server sends is compressed by deflateWriter.
func (c *wireConn) compress(cmd *wire.Command) error {
	if c.zw != nil {
		return c.tagged(cmd.Tag, "NO", "COMPRESSIONACTIVE", "DEFLATE is already active")
	}
	if cmd.Compress != "DEFLATE" {
		return c.tagged(cmd.Tag, "BAD", "", "Only DEFLATE is offered")
	}
	if err := c.tagged(cmd.Tag, "OK", "", "DEFLATE active"); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// The OK above waits in cork, uncompressed; what follows goes through the compressor
	// into cork after it (connbuf.go: the connection's write buffer is taken anew).
	c.flushLocked()
	c.zw = &deflateWriter{w: &c.cork}
	// What the client sends next is compressed; the decoder reads on from what the
	// connection's reader has buffered, which it keeps from now on.
	c.br = bufio.NewReaderSize(inflate.NewReader(c.br), 4096)
	c.newParser()
	return nil
}

// deflateDict is how much of what was sent before each write is given to the compressor
// as its dictionary (klauspost's stateless compressor takes at most 8 KiB).
const deflateDict = 8 << 10

// deflateWriter compresses each write on its own (klauspost/compress's StatelessDeflate),
// with the last 8 KiB sent as the dictionary, and ends it at a byte boundary with an
// empty stored block (a sync flush). A compressor with state (compress/flate's) holds
// some 300 KiB per connection for as long as the connection lasts, also while it idles
// for hours in IDLE; this one holds the 8 KiB (the encoder's tables come from a pool for
// the length of a write). The writes are the 4 KiB of the connection's buffer, or less
// at the end of a response.
type deflateWriter struct {
	w    io.Writer
	dict []byte
}

func (d *deflateWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := flate.StatelessDeflate(d.w, p, false, d.dict); err != nil {
		return 0, err
	}
	if len(p) >= deflateDict {
		d.dict = append(d.dict[:0], p[len(p)-deflateDict:]...)
	} else {
		if keep := deflateDict - len(p); len(d.dict) > keep {
			d.dict = append(d.dict[:0], d.dict[len(d.dict)-keep:]...)
		}
		d.dict = append(d.dict, p...)
	}
	return len(p), nil
}
