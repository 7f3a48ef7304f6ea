package decisionlog_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// A user looks for the mail their bank sent them yesterday.
func Example() {
	dir, _ := os.MkdirTemp("", "decisionlog")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := decisionlog.Open(ctx, decisionlog.Config{Path: filepath.Join(dir, "decisions.db")}, decisionlog.Deps{})
	if err != nil {
		panic(err)
	}
	defer l.Close()

	yesterday := time.Date(2026, 5, 4, 9, 30, 0, 0, time.UTC)
	l.Add(decisionlog.Record{Time: yesterday, Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.10"),
		Sender: "alerts@bank.example", Recipient: "alice@example.org", Subject: "Your statement",
		Stage: "data", Verdict: decisionlog.VerdictReject, Reply: "554 5.7.1 message content rejected",
		Rule: "exe_attachment", Category: "Content-Type", QueueID: ""})
	l.Add(decisionlog.Record{Time: yesterday, Listener: "mx", Sender: "news@shop.example",
		Recipient: "bob@example.org", Stage: "data", Verdict: decisionlog.VerdictAccept, QueueID: "Q1"})
	if err := l.Flush(ctx); err != nil {
		panic(err)
	}

	page, _, err := l.Query(ctx, decisionlog.Filter{
		Scope:   decisionlog.Scope{Recipients: []string{"alice@example.org"}}, // only her mail
		Address: "bank.example",
		Since:   yesterday.Truncate(24 * time.Hour),
	})
	if err != nil {
		panic(err)
	}
	for _, r := range page {
		fmt.Println(r.Sender, r.Verdict, r.Category, r.Reply)
	}
	// Output: alerts@bank.example reject Content-Type 554 5.7.1 message content rejected
}
