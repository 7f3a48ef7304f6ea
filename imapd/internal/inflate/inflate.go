package inflate

import (
	"errors"
	"fmt"
	"io"
)

// ErrCorrupt is returned, wrapped, for a stream that is not DEFLATE.
var ErrCorrupt = errors.New("inflate: corrupt DEFLATE stream")

const (
	maxBits  = 15  // the longest code (RFC 1951 §3.2.2)
	maxLit   = 288 // literal/length codes, 286 and 287 unused
	maxDist  = 30  // distance codes
	winSize  = 1 << 15
	winMask  = winSize - 1
	endBlock = 256
)

// huffman is a canonical Huffman code: how many codes of each length, and the symbols
// ordered by code (as zlib's puff.c decodes it, one bit at a time).
type huffman struct {
	count  [maxBits + 1]uint16
	symbol [maxLit]uint16
}

// build makes the code from the code lengths of symbols 0..len(lengths)-1. It returns
// how many codes are left unused: 0 for a complete code, more for an incomplete one; an
// over-subscribed code is an error.
func (h *huffman) build(lengths []uint8) (left int, err error) {
	h.count = [maxBits + 1]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		return 0, nil // no codes: decoding any fails
	}
	left = 1
	for l := 1; l <= maxBits; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return 0, fmt.Errorf("%w: over-subscribed code", ErrCorrupt)
		}
	}
	var offs [maxBits + 1]uint16
	for l := 1; l < maxBits; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return left, nil
}

// Length and distance bases and extra bits (RFC 1951 §3.2.5).
var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtr = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// The order of the code length code lengths (RFC 1951 §3.2.7).
	clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

var fixedLit, fixedDist huffman

func init() {
	var l [maxLit]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	fixedLit.build(l[:])
	var d [maxDist]uint8
	for i := range d {
		d[i] = 5
	}
	fixedDist.build(d[:])
}

type state uint8

const (
	stateHeader state = iota // before a block's header
	stateStored              // in a stored block: stored bytes left
	stateCodes               // in a fixed or dynamic block
	stateDone                // after the final block
)

// Reader decodes a raw DEFLATE stream (no zlib or gzip wrapper) read from r.
type Reader struct {
	r     io.ByteReader
	bits  uint32 // bits read and not used, lowest first
	nbits uint
	err   error

	st     state
	final  bool // the current block is the last
	stored int  // stored bytes left in the block
	lit    *huffman
	dist   *huffman
	dyn    [2]huffman // the dynamic block's codes

	win     [winSize]byte
	total   int64 // bytes decoded so far; win[total&winMask] is the next
	copyLen int   // bytes of a back-reference still to copy
	copyDst int   // its distance
}

// NewReader returns a Reader over r. Bits are taken from r a byte at a time, so r should
// be buffered (a *bufio.Reader); nothing past the end of the stream is read.
func NewReader(r io.ByteReader) *Reader { return &Reader{r: r} }

// Read decodes into p. It returns as soon as p is full or a block ends with something
// decoded, so it blocks on r only to decode the first byte it returns.
func (z *Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if z.err != nil {
			return n, z.err
		}
		if z.copyLen > 0 {
			c := min(z.copyLen, len(p)-n)
			for i := 0; i < c; i++ {
				b := z.win[(z.total-int64(z.copyDst))&winMask]
				z.win[z.total&winMask] = b
				z.total++
				p[n] = b
				n++
			}
			z.copyLen -= c
			continue
		}
		switch z.st {
		case stateDone:
			return n, io.EOF
		case stateHeader:
			if n > 0 {
				return n, nil // a block ended: hand over its data before reading on
			}
			z.err = z.header()
		case stateStored:
			if z.stored == 0 {
				z.st = z.next()
				continue
			}
			b, err := z.r.ReadByte()
			if err != nil {
				z.err = unexpected(err)
				continue
			}
			z.stored--
			z.win[z.total&winMask] = b
			z.total++
			p[n] = b
			n++
		case stateCodes:
			sym, err := z.decode(z.lit)
			if err != nil {
				z.err = err
				continue
			}
			switch {
			case sym < endBlock:
				z.win[z.total&winMask] = byte(sym)
				z.total++
				p[n] = byte(sym)
				n++
			case sym == endBlock:
				z.st = z.next()
			default:
				z.err = z.backRef(sym)
			}
		}
	}
	return n, nil
}

// next is the state after a block.
func (z *Reader) next() state {
	if z.final {
		return stateDone
	}
	return stateHeader
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// need makes n bits available (n <= 24).
func (z *Reader) need(n uint) error {
	for z.nbits < n {
		b, err := z.r.ReadByte()
		if err != nil {
			return unexpected(err)
		}
		z.bits |= uint32(b) << z.nbits
		z.nbits += 8
	}
	return nil
}

// take returns the next n bits (n <= 16).
func (z *Reader) take(n uint) (int, error) {
	if err := z.need(n); err != nil {
		return 0, err
	}
	v := int(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v, nil
}

// decode reads one symbol of h, a bit at a time (codes are packed from their most
// significant bit: RFC 1951 §3.1.1), taking a byte from r only when the bits run out.
func (z *Reader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	bits, nbits := z.bits, z.nbits
	for l := 1; l <= maxBits; l++ {
		if nbits == 0 {
			b, err := z.r.ReadByte()
			if err != nil {
				z.bits, z.nbits = bits, nbits
				return 0, unexpected(err)
			}
			bits, nbits = uint32(b), 8
		}
		code |= int(bits & 1)
		bits >>= 1
		nbits--
		count := int(h.count[l])
		if code-first < count {
			z.bits, z.nbits = bits, nbits
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	z.bits, z.nbits = bits, nbits
	return 0, fmt.Errorf("%w: invalid code", ErrCorrupt)
}

// header reads a block's header, and for a dynamic block its codes.
func (z *Reader) header() error {
	h, err := z.take(3)
	if err != nil {
		return err
	}
	z.final = h&1 == 1
	switch h >> 1 {
	case 0: // stored (§3.2.4): to the byte boundary, LEN, NLEN
		z.bits, z.nbits = 0, 0
		var b [4]byte
		for i := range b {
			if b[i], err = z.r.ReadByte(); err != nil {
				return unexpected(err)
			}
		}
		l, nl := int(b[0])|int(b[1])<<8, int(b[2])|int(b[3])<<8
		if l != ^nl&0xffff {
			return fmt.Errorf("%w: stored block length", ErrCorrupt)
		}
		z.stored, z.st = l, stateStored
	case 1:
		z.lit, z.dist, z.st = &fixedLit, &fixedDist, stateCodes
	case 2:
		if err := z.dynamic(); err != nil {
			return err
		}
		z.lit, z.dist, z.st = &z.dyn[0], &z.dyn[1], stateCodes
	default:
		return fmt.Errorf("%w: block type 3", ErrCorrupt)
	}
	return nil
}

// dynamic reads the codes of a dynamic block (RFC 1951 §3.2.7).
func (z *Reader) dynamic() error {
	hlit, err := z.take(5)
	if err != nil {
		return err
	}
	hdist, err := z.take(5)
	if err != nil {
		return err
	}
	hclen, err := z.take(4)
	if err != nil {
		return err
	}
	nlen, ndist, ncode := hlit+257, hdist+1, hclen+4
	if nlen > 286 || ndist > maxDist {
		return fmt.Errorf("%w: too many codes", ErrCorrupt)
	}
	var lengths [maxLit + maxDist]uint8
	for i := 0; i < ncode; i++ {
		v, err := z.take(3)
		if err != nil {
			return err
		}
		lengths[clOrder[i]] = uint8(v)
	}
	var cl huffman
	if err := cl.buildDegenerate(lengths[:19]); err != nil {
		return fmt.Errorf("%w (code length code)", err)
	}
	lengths = [maxLit + maxDist]uint8{}
	for i := 0; i < nlen+ndist; {
		sym, err := z.decode(&cl)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return fmt.Errorf("%w: repeat with no length", ErrCorrupt)
			}
			val = lengths[i-1]
			rep, err = z.take(2)
			rep += 3
		case 17:
			rep, err = z.take(3)
			rep += 3
		default:
			rep, err = z.take(7)
			rep += 11
		}
		if err != nil {
			return err
		}
		if i+rep > nlen+ndist {
			return fmt.Errorf("%w: too many lengths", ErrCorrupt)
		}
		for ; rep > 0; rep-- {
			lengths[i] = val
			i++
		}
	}
	if lengths[endBlock] == 0 {
		return fmt.Errorf("%w: no end-of-block code", ErrCorrupt)
	}
	if err := z.dyn[0].buildDegenerate(lengths[:nlen]); err != nil {
		return fmt.Errorf("%w (literal/length code)", err)
	}
	if err := z.dyn[1].buildDegenerate(lengths[nlen : nlen+ndist]); err != nil {
		return fmt.Errorf("%w (distance code)", err)
	}
	return nil
}

// buildDegenerate is build that accepts an incomplete code only when it is a single code
// of one bit (as zlib and compress/flate do); a code without any codes fails when used.
func (h *huffman) buildDegenerate(lengths []uint8) error {
	left, err := h.build(lengths)
	if err == nil && left > 0 && !(h.count[1] == 1 && int(h.count[0]) == len(lengths)-1) {
		err = fmt.Errorf("%w: incomplete code", ErrCorrupt)
	}
	return err
}

// backRef reads the length and distance of a copy (RFC 1951 §3.2.5).
func (z *Reader) backRef(sym int) error {
	sym -= 257
	if sym >= len(lenBase) {
		return fmt.Errorf("%w: length code", ErrCorrupt)
	}
	e, err := z.take(uint(lenExtra[sym]))
	if err != nil {
		return err
	}
	length := int(lenBase[sym]) + e
	d, err := z.decode(z.dist)
	if err != nil {
		return err
	}
	if d >= maxDist {
		return fmt.Errorf("%w: distance code", ErrCorrupt)
	}
	e, err = z.take(uint(distExtr[d]))
	if err != nil {
		return err
	}
	dist := int(distBase[d]) + e
	if int64(dist) > z.total || dist > winSize {
		return fmt.Errorf("%w: distance too far back", ErrCorrupt)
	}
	z.copyLen, z.copyDst = length, dist
	return nil
}
