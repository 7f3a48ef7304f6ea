package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
	"github.com/portcullis-mail/portcullis/policy"
)

// The bayes policy that serve builds (config.Deps.BayesStores), the Junk trainer and the
// release trainer hold one store of the shared PostgreSQL database, one token table: a
// Junk move is scored by the policy at once, not after its refresh (bayes.refresh, here
// an hour). With PostgreSQL down, the trainers do not dial it for every move: the store
// is tried again after a back-off.
func TestBayesOneStorePerProcess(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.StartServer(t)
	cfg := config.Default(t.TempDir())
	cfg.Bayes.Postgres = pgtest.NewDatabase(t, srv.DSN)
	cfg.Bayes.Refresh = time.Hour
	logger := slog.New(slog.DiscardHandler)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte("policies:\n  bayes: { bayes: {} }\nrules: []\n"), 0o644))
	// as serve builds its deps
	rf, err := config.LoadRules(rules, config.Deps{DataDir: cfg.DataDir, Logger: logger,
		BayesPostgres: cfg.Bayes.Postgres, BayesRefresh: cfg.Bayes.Refresh, BayesStores: bayesStores})
	require.NoError(t, err)
	bp := rf.Policies["bayes"].(policy.DataPolicy)
	defer rf.Policies["bayes"].(interface{ Close() error }).Close()

	spam := "From: x@spam.example\r\nSubject: cheap pills now\r\n\r\nbuy cheap pills now, limited offer\r\n"
	ham := "From: a@b.example\r\nSubject: the quarterly figures\r\n\r\nhere are the figures for the meeting\r\n"
	score := func() policy.Result {
		return bp.CheckData(ctx, &policy.Transaction{Message: policy.NewMessage([]byte(spam), time.Now())})
	}
	require.Equal(t, "bayes.untrained", score().Reason) // the policy opened the store first
	junk := junkTrainer(cfg, logger)
	release := releaseTrainer(cfg, rf.Policies, logger)
	for i := range 12 { // bayes.DefaultMinTrained of each class, distinct messages
		n := fmt.Sprint(i)
		require.NoError(t, junk(ctx, "bob@example.test", strings.NewReader(strings.ReplaceAll(spam, "now", "now "+n)), true))
		require.NoError(t, release(ctx, "bob@example.test", strings.NewReader(strings.ReplaceAll(ham, "figures", "figures "+n))))
	}
	r := score()
	require.NotEqual(t, "bayes.untrained", r.Reason, "the policy does not see the trainers' training: another copy of the table")
	require.Greater(t, r.Score, 0.5)

	// PostgreSQL down: a new trainer (a store not open yet) tries it once, then backs
	// off; the error says so.
	cfg2 := config.Default(t.TempDir())
	cfg2.Bayes.Postgres = pgtest.NewDatabase(t, srv.DSN)
	srv.Stop()
	defer srv.Restart()
	junk2 := junkTrainer(cfg2, logger)
	require.Error(t, junk2(ctx, "bob@example.test", strings.NewReader(spam), true))
	for range 10 {
		err := junk2(ctx, "bob@example.test", strings.NewReader(spam), true)
		require.ErrorContains(t, err, "not tried again before")
	}
}
