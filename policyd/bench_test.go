package policyd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/portcullis-mail/portcullis/policyd"
)

// BenchmarkServe: RCPT requests answered over one reused connection, as one Postfix
// smtpd process sends them (bench/doors.sh compares the server with postgrey).
func BenchmarkServe(b *testing.B) {
	addr := startB(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reqs := make([]string, 1000)
	for i := range reqs {
		reqs[i] = encode(req("RCPT", fmt.Sprint("b", i), fmt.Sprintf("198.51.100.%d", i%250+1), fmt.Sprintf("s%d@sender.test", i), fmt.Sprintf("r%d@example.test", i%7)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		io.WriteString(c, reqs[i%len(reqs)])
		if _, err := br.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		br.ReadString('\n')
	}
}

func startB(b *testing.B) string {
	s := newServer(b, nil)
	ln, err := policyd.Listen("127.0.0.1:0", nil)
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	b.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}
