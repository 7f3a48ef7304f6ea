package spool_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/spool"
)

func Example() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	s, err := spool.Open(dir, spool.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	env := spool.Envelope{From: "alice@example.org", To: []string{"bob@example.test"}}
	id, err := s.Enqueue(context.Background(), env, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		panic(err) // answer 4xx: the message is not queued
	}
	// Durable now: answer 250.

	got, msg, _ := s.Open(id)
	body, _ := io.ReadAll(msg)
	msg.Close()
	fmt.Println(got.To[0], got.Size, len(body))

	_ = s.SetRecipient(id, "bob@example.test", spool.Delivered, "250 ok")
	fmt.Println(s.Remove(id))
	// Output:
	// bob@example.test 22 22
	// <nil>
}
