package bayes_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/portcullis-mail/portcullis/bayes"
)

func Example() {
	ctx := context.Background()
	c, err := bayes.New(bayes.Config{MinTrained: 1}, bayes.NewMemStore())
	if err != nil {
		panic(err)
	}
	msg := func(subject, body string) []byte {
		return []byte("From: someone@example.org\nSubject: " + subject + "\n\n" + body + "\n")
	}
	c.Train(ctx, msg("cheap meds", "buy cheap viagra now, click here"), bayes.Spam)
	c.Train(ctx, msg("you are a winner", "claim your casino prize, click here now"), bayes.Spam)
	c.Train(ctx, msg("meeting notes", "the patch review is on the agenda for tomorrow"), bayes.Ham)
	c.Train(ctx, msg("release plan", "tomorrow we tag the release after the review"), bayes.Ham)

	for _, m := range [][]byte{
		msg("cheap viagra", "click here now for cheap meds"),
		msg("review tomorrow", "the release review is tomorrow"),
	} {
		sc, _ := c.Classify(ctx, m)
		fmt.Printf("spam=%v %s\n", sc.Spam, strings.SplitN(string(m), "\n", 3)[1])
	}
	// Output:
	// spam=true Subject: cheap viagra
	// spam=false Subject: review tomorrow
}
