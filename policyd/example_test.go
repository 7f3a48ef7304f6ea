package policyd_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/portcullis-mail/portcullis/policy"
	"github.com/portcullis-mail/portcullis/policyd"
)

func Example() {
	rules, err := policy.ParseRules([]byte(`
rules:
  - name: no-spammer
    stage: mail
    if: sender.domain == "spam.example"
    reject: 554 5.7.1 "mail from {{sender.domain}} refused"
`), "rules.yaml")
	if err != nil {
		panic(err)
	}
	engine, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	srv, err := policyd.New(policyd.Config{}, policyd.Deps{Engine: engine, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	// What Postfix sends for RCPT TO (a few of its attributes); Serve reads the same
	// from the connection.
	req := policyd.Request{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "instance": "a1.2.3",
		"client_address": "192.0.2.1", "sender": "bob@spam.example", "recipient": "alice@example.test",
	}
	action, err := srv.Answer(context.Background(), req)
	fmt.Println("action=" + action)
	// Output: action=554 5.7.1 mail from spam.example refused
}
