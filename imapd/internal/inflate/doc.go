// Package inflate decodes a DEFLATE stream (RFC 1951) that arrives over a connection
// in flushed pieces, returning every byte a flush made decodable without waiting for
// more input: what COMPRESS=DEFLATE (RFC 4978) needs of the server's reading side.
//
// Go's compress/flate returns decoded data only at a stored block (a sync flush's empty
// one), at the end of the stream or when its window is full: a client that ends its
// writes with zlib's Z_PARTIAL_FLUSH (the block ends, then an empty fixed-Huffman block
// of 10 bits, of which only the whole bytes are sent) waits for a reply to a command
// the server has not decoded yet. klauspost/compress's decoder returns each block's data
// (WithPartialBlock), but reads 10 bits past the end of a dynamic block before it
// decodes the block's last symbols, and so waits the same way. This decoder reads bits
// one at a time as a symbol needs them (never past the end-of-block code it decodes),
// and hands over what it decoded at the end of every block.
//
// Memory is the 32 KiB window and the code tables; a stream inflates at most about 1032
// times (RFC 1951 §3.2.5: a 258-byte copy in two bits). Decoding a code bit by bit costs
// speed: BenchmarkInflate decodes 94-220 MB/s against compress/flate's 250-616 MB/s on
// the same stream (the shared 2-core machine, 4 rounds each): about 2.5 times slower,
// and far above what a client's connection carries.
package inflate
