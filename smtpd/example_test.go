package smtpd_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/smtpd"
	"github.com/portcullis-mail/portcullis/spool"
)

// printQueue stands in for the durable spool: it prints what it is given.
type printQueue struct{}

func (printQueue) Enqueue(_ context.Context, env spool.Envelope, msg io.Reader) (string, error) {
	b, _ := io.ReadAll(msg)
	first, _, _ := strings.Cut(string(b), "\r\n")
	fmt.Printf("queued from=%s to=%v, first line %q\n", env.From, env.To, first)
	return "0001", nil
}

// An MX for example.test with one rule, fed by go-smtp's client.
func Example() {
	rules, _ := policy.ParseRules([]byte(`
rules:
  - name: no-spam
    stage: data
    if: msg.subject contains "viagra"
    reject: 554 5.7.1 "no, thanks"
`), "rules.yaml")
	engine, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	dataDir, _ := os.MkdirTemp("", "smtpd-example")
	defer os.RemoveAll(dataDir)
	srv, err := smtpd.New(smtpd.Config{
		Hostname:     "mx.example.test",
		DataDir:      dataDir, // the self-signed certificate goes to dataDir/tls
		LocalDomains: []string{"example.test"},
		Listeners:    []smtpd.ListenerConfig{{Name: "mx", Addr: "127.0.0.1:0", Mode: smtpd.ModeMX}},
	}, smtpd.Deps{Engine: engine, Spool: printQueue{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := srv.Listen(); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()

	send := func(to, subject string) {
		msg := "From: <a@example.net>\r\nSubject: " + subject + "\r\n\r\nHello\r\n"
		c, err := smtp.Dial(srv.Addr("mx").String())
		if err != nil {
			panic(err)
		}
		defer c.Close()
		err = c.SendMail("a@example.net", []string{to}, strings.NewReader(msg))
		if e, ok := err.(*smtp.SMTPError); ok {
			fmt.Println(e.Code, e.EnhancedCode, e.Message)
		}
	}
	send("bob@example.test", "lunch?")
	send("bob@example.test", "cheap viagra")
	send("someone@elsewhere.test", "relay?")

	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	// Output:
	// queued from=a@example.net to=[bob@example.test], first line "Received: from localhost (unknown [127.0.0.1])"
	// 554 [5 7 1] no, thanks
	// 554 [5 7 1] Relay access denied
}
