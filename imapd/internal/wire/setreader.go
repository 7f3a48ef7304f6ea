package wire

import "bufio"

// SetReader makes the parser read from r from the next command on: a connection that
// gives its read buffer back while it waits for the client takes another one when the
// client speaks again (imapd's wireConn.waitInput).
func (p *Parser) SetReader(r *bufio.Reader) { p.r = r }
