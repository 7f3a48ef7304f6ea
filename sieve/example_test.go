package sieve_test

import (
	"context"
	"fmt"

	"github.com/portcullis-mail/portcullis/sieve"
)

func Example() {
	script := []byte(`require ["fileinto", "imap4flags", "vacation"];
if header :contains "subject" "invoice" {
	fileinto :flags "\\Flagged" "Billing";
	stop;
}
vacation :days 7 :subject "Away" "I am away until Monday.";
`)
	s, err := sieve.Compile(script, sieve.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := sieve.NewMessage([]byte("From: alice@example.org\r\nTo: bob@example.com\r\nSubject: Invoice 42\r\n\r\nPlease pay.\r\n"))
	env := sieve.Envelope{From: "alice@example.org", To: "bob@example.com"}
	res, err := s.Run(context.Background(), msg, env, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range res.Actions {
		switch a := a.(type) {
		case sieve.FileInto:
			fmt.Println("fileinto", a.Mailbox, a.Flags)
		case sieve.Keep:
			fmt.Println("keep", a.Flags)
		case sieve.Vacation:
			fmt.Println("vacation to", a.To, "skip:", a.Skip)
		}
	}
	// Output:
	// fileinto Billing [\Flagged]
}
