package virus_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/portcullis-mail/portcullis/virus"
	"github.com/portcullis-mail/portcullis/virus/clamdtest"
)

func Example() {
	// A scripted stand-in for clamd so that the example runs anywhere; in production
	// Addrs names real daemons, e.g. "unix:/run/clamav/clamd.ctl".
	fake, err := clamdtest.NewFake(func(r *clamdtest.Request) {
		if strings.Contains(string(r.Body), "EICAR-STANDARD-ANTIVIRUS-TEST-FILE") {
			r.Reply("stream: Eicar-Test-Signature FOUND")
			return
		}
		r.Reply("stream: OK")
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fake.Close()

	c, err := virus.NewClient(virus.Config{Addrs: []string{fake.Addr()}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, msg := range []string{"Subject: hello\r\n\r\nhi\r\n", "Subject: test\r\n\r\n" + clamdtest.EICAR + "\r\n"} {
		res, err := c.Scan(context.Background(), strings.NewReader(msg))
		switch {
		case err != nil: // ErrUnavailable: fail closed, answer 451
			fmt.Println("not scanned:", err)
		case res.Infected:
			fmt.Println("infected:", res.Signature)
		default:
			fmt.Println("clean")
		}
	}
	// Output:
	// clean
	// infected: Eicar-Test-Signature
}
