// Command policyload measures a Postfix policy-delegation server (check_policy_service):
// it sends N RCPT requests over C connections, each connection one request after the
// other as Postfix's smtpd does, and prints the requests answered per second. The
// requests cycle through T triplets (client address, sender, recipient), the same
// sequence for every server, so that portcullis's policyd and postgrey see the same
// load. It fails when a server closes a connection or answers without "action=".
//
// Usage: policyload -addr 127.0.0.1:10040 [-n 20000] [-c 8] [-triplets 1000]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func request(i, triplets int) string {
	t := i % triplets
	return fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"+
		"client_address=198.%d.%d.%d\nclient_name=unknown\nreverse_client_name=unknown\nhelo_name=client%d.example.net\n"+
		"sender=user%d+tag@sender%d.example.net\nrecipient=rcpt%d@example.test\nrecipient_count=0\n"+
		"queue_id=\ninstance=%x.%x\nsize=0\nsasl_method=\nsasl_username=\nsasl_sender=\n"+
		"ccert_subject=\nccert_issuer=\nccert_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n"+
		"etrn_domain=\nstress=\nserver_address=127.0.0.1\nserver_port=25\npolicy_context=\n\n",
		18+t%2, (t/250)%256, t%250+1, t, t, t%50, t%300, i, time.Now().UnixNano())
}

func main() {
	addr := flag.String("addr", "127.0.0.1:10040", "policy server address")
	n := flag.Int("n", 20000, "requests")
	c := flag.Int("c", 8, "connections")
	triplets := flag.Int("triplets", 1000, "distinct (client, sender, recipient) triplets")
	flag.Parse()
	var next, fails atomic.Int64
	actions := sync.Map{}
	var wg sync.WaitGroup
	start := time.Now()
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", *addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "policyload:", err)
				fails.Add(1)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := conn.Write([]byte(request(i, *triplets))); err != nil {
					fmt.Fprintln(os.Stderr, "policyload: write:", err)
					fails.Add(1)
					return
				}
				line, err := br.ReadString('\n')
				empty, err2 := br.ReadString('\n')
				if err != nil || err2 != nil || !strings.HasPrefix(line, "action=") || empty != "\n" {
					fmt.Fprintf(os.Stderr, "policyload: bad answer %q %q: %v %v\n", line, empty, err, err2)
					fails.Add(1)
					return
				}
				a, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "action="), " ")
				v, _ := actions.LoadOrStore(a, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if fails.Load() > 0 {
		os.Exit(1)
	}
	var seen []string
	actions.Range(func(k, v any) bool {
		seen = append(seen, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	fmt.Fprintf(os.Stderr, "policyload: %s: %d requests in %v (%s)\n", *addr, *n, el.Round(time.Millisecond), strings.Join(seen, " "))
	fmt.Printf("%.0f\n", float64(*n)/el.Seconds())
}
