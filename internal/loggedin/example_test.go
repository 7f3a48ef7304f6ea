package loggedin_test

import (
	"fmt"
	"time"

	"github.com/portcullis-mail/portcullis/internal/loggedin"
)

func ExampleRegistry() {
	type session struct{ id int }
	var r loggedin.Registry[*session]
	old := &session{1}
	r.Add("alice@example.org", old, nil)
	cut := time.Now().Add(time.Millisecond) // the move became visible everywhere
	time.Sleep(2 * time.Millisecond)
	r.Add("alice@example.org", &session{2}, nil) // the move's own session
	for _, s := range r.Before("alice@example.org", cut) {
		fmt.Println("close session", s.S.id)
	}
	// Output: close session 1
}
