package policy_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/portcullis-mail/portcullis/address"
	"github.com/portcullis-mail/portcullis/policy"
)

// blocklist is a policy: it observes, and the rules decide.
type blocklist struct{ bad netip.Prefix }

func (b blocklist) CheckConnect(ctx context.Context, tx *policy.Transaction) policy.Result {
	if b.bad.Contains(tx.Conn.IP) {
		return policy.Result{Status: policy.StatusFail, Reason: "example.listed", Facts: map[string]any{"listed": true}}
	}
	return policy.Result{Status: policy.StatusPass, Facts: map[string]any{"listed": false}}
}

func (blocklist) DeclareFacts() map[string]any { return map[string]any{"listed": false} }

func Example() {
	rules, err := policy.ParseRules([]byte(`
rules:
  - name: listed
    stage: rcpt
    if: bl.listed && !client.authenticated
    reject: 554 5.7.1 "{{client.ip}} is listed"
`), "rules.yaml")
	if err != nil {
		panic(err)
	}
	engine, err := policy.NewEngine(policy.EngineConfig{
		Rules:    rules,
		Policies: map[string]policy.Policy{"bl": blocklist{netip.MustParsePrefix("192.0.2.0/24")}},
	})
	if err != nil {
		panic(err)
	}
	tx := policy.NewTransaction(policy.Conn{IP: netip.MustParseAddr("192.0.2.7")})
	tx.Envelope.From = address.Parse("<a@example.net>")
	tx.Rcpt = address.Parse("<b@example.test>")
	d := engine.Evaluate(context.Background(), policy.StageRcpt, tx)
	fmt.Println(d.Verdict, d.Reply)
	// Output: reject 554 5.7.1 192.0.2.7 is listed
}
