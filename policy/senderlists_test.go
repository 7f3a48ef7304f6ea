package policy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/address"
)

// listsFunc is a SenderLists over a table: (rcpt, sender) -> kind.
type listsFunc struct {
	table map[[2]string]string
	calls atomic.Int32
	err   error
}

func (l *listsFunc) Listed(_ context.Context, rcpt, sender string) (string, error) {
	l.calls.Add(1)
	return l.table[[2]string{rcpt, sender}], l.err
}

func TestRcptSenderLists(t *testing.T) {
	specs, err := ParseRules([]byte(`
rules:
  - name: user-allows
    stage: rcpt
    if: rcpt.allows_sender
    accept: true
  - name: user-blocks
    stage: rcpt
    if: rcpt.blocks_sender
    reject: 550 5.7.1 "the recipient does not accept mail from you"
`), "inline")
	require.NoError(t, err)
	lists := &listsFunc{table: map[[2]string]string{
		{"alice@example.test", "bank@bank.example"}: "allow",
		{"alice@example.test", "spam@spam.example"}: "block",
	}}
	e, err := NewEngine(EngineConfig{Rules: specs, SenderLists: lists})
	require.NoError(t, err)
	for _, c := range []struct {
		sender, rcpt string
		want         Verdict
	}{
		{"bank@bank.example", "alice@example.test", Accept},
		{"spam@spam.example", "alice@example.test", Reject},
		{"spam@spam.example", "bob@example.test", Continue}, // alice's list, not bob's
		{"", "alice@example.test", Continue},
	} {
		tx := NewTransaction(Conn{})
		tx.Envelope.From = address.Parse(c.sender)
		tx.Rcpt = address.Parse(c.rcpt)
		require.Equal(t, c.want, e.Evaluate(context.Background(), StageRcpt, tx).Verdict, "%s -> %s", c.sender, c.rcpt)
	}
	// A failing lookup is neither allow nor block.
	lists.err = errors.New("database is locked")
	tx := NewTransaction(Conn{})
	tx.Envelope.From = address.Parse("spam@spam.example")
	tx.Rcpt = address.Parse("alice@example.test")
	require.Equal(t, Continue, e.Evaluate(context.Background(), StageRcpt, tx).Verdict)

	// Rules that do not mention the lists never look them up.
	specs, err = ParseRules([]byte("rules:\n  - name: r\n    stage: rcpt\n    if: rcpt.ours\n    score: 1\n"), "inline")
	require.NoError(t, err)
	quiet := &listsFunc{}
	e, err = NewEngine(EngineConfig{Rules: specs, SenderLists: quiet, LocalDomains: []string{"example.test"}})
	require.NoError(t, err)
	e.Evaluate(context.Background(), StageRcpt, tx)
	require.Zero(t, quiet.calls.Load())
}
