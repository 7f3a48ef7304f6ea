package redisclient_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-mail/portcullis/internal/redisclient"
)

// A server that does not answer (here nothing listens on port 1) costs Failures calls;
// then the circuit is open and calls fail at once.
func ExampleNew() {
	c := redisclient.New(redisclient.Options{Addr: "127.0.0.1:1", Timeout: time.Second})
	defer c.Close()
	for i := range redisclient.Failures + 1 {
		err := c.Incr(context.Background(), "counter").Err()
		fmt.Println(i, errors.Is(err, redisclient.ErrOpen))
	}
	// Output:
	// 0 false
	// 1 false
	// 2 false
	// 3 true
}
