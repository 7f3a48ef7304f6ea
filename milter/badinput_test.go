package milter_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

func packet(cmd byte, data string) []byte {
	b := make([]byte, 5, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(1+len(data)))
	b[4] = cmd
	return append(b, data...)
}

// optneg is the MTA's option negotiation: version 6, every action, no protocol flags.
func optneg() []byte {
	d := make([]byte, 12)
	binary.BigEndian.PutUint32(d[0:], 6)
	binary.BigEndian.PutUint32(d[4:], 0x1ff)
	binary.BigEndian.PutUint32(d[8:], 0x1fffff)
	return packet('O', string(d))
}

// TestBadPackets: malformed milter packets end the connection with no panic and no
// hang, and the server goes on serving.
func TestBadPackets(t *testing.T) {
	addr, _ := startMilter(t, "127.0.0.1:0")
	zero := []byte{0, 0, 0, 0}
	huge := []byte{0xff, 0xff, 0xff, 0xff, 'O'}
	short := append(optneg(), 0, 0, 0, 50, 'C', 'x') // announces 50 bytes, sends 2, then EOF
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"zero length first", zero},
		{"zero length after negotiation", append(optneg(), zero...)},
		{"4 GiB length", huge},
		{"2 MiB length", append(optneg(), 0, 0x20, 0, 0, 'B')},
		{"short packet then EOF", short},
		{"unknown command", append(optneg(), packet('Z', "junk")...)},
		{"unknown command first", packet('Z', "junk")},
		{"connect with truncated data", append(optneg(), packet('C', "host")...)},
		{"binary junk", []byte("\x00\x00\x00\x03\xff\xfe\xfd\x00\x00\x00\x01")},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(c.in); err != nil {
				t.Fatal(err)
			}
			conn.(*net.TCPConn).CloseWrite()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			// Whatever the server answered (the negotiation, an error reply), it
			// closes the connection.
			_, err = io.ReadAll(conn)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v (want the connection closed)", err)
			}
		})
	}
	// The server still works: a miltertest script passes.
	bin := testenv.Program(t, "miltertest")
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(bin, "-s", "testdata/accept.lua")
	cmd.Env = append(cmd.Environ(), "MILTER_SOCKET=inet:"+port+"@"+host)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("after bad input: %v\n%s", err, out)
	}
}
