package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/decisionlog"
)

// waitRecords reads the running server's decision log (data/decisions.db under dir)
// until a record matches each of preds, and returns those records in preds' order.
func waitRecords(t *testing.T, dir string, preds ...func(decisionlog.Record) bool) []decisionlog.Record {
	t.Helper()
	l, err := decisionlog.Open(context.Background(), decisionlog.Config{Path: filepath.Join(dir, "data", "decisions.db"), Retention: -1}, decisionlog.Deps{})
	require.NoError(t, err)
	defer l.Close()
	out := make([]decisionlog.Record, len(preds))
	var recs []decisionlog.Record
	for range 100 {
		f := decisionlog.Filter{Scope: decisionlog.Scope{All: true}, Sort: decisionlog.SortOldest, Limit: 1000}
		recs, _, err = l.Query(context.Background(), f)
		require.NoError(t, err)
		found := 0
		for i, p := range preds {
			for _, r := range recs {
				if p(r) {
					out[i] = r
					found++
					break
				}
			}
		}
		if found == len(preds) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("decision log: not every record arrived; have:\n%+v", recs)
	return nil
}
