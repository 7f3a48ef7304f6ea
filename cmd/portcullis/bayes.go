package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/bayes"
	"github.com/portcullis-mail/portcullis/bayes/bayescli"
)

// bayesCmd: portcullis bayes train|classify|stats|prune|eval, on the token database of the
// data dir (DATA/bayes/global.db), or the site-wide one of bayes.postgres, unless --db
// names another.
func bayesCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "bayes", Short: "Train, inspect and evaluate the Bayesian content scorer"}
	var db bayescli.DB
	c.PersistentFlags().StringVar(&db.Path, "db", "", "token database (default bayes.postgres, else DATA/bayes/global.db)")
	c.PersistentFlags().StringVar(&db.User, "user", "", "use this user's own database")
	resolveDB := func() (bayescli.DB, error) {
		if db.Path != "" {
			return db, nil
		}
		cfg, err := loadAsDataOwner(g)
		if err != nil {
			return db, err
		}
		d := db
		d.Path = bayes.DefaultDBPath(cfg.DataDir)
		d.Postgres = cfg.Bayes.Postgres // the site-wide database, when configured
		return d, os.MkdirAll(cfg.DataDir+"/bayes", 0o700)
	}

	var train bayescli.TrainOptions
	trainCmd := &cobra.Command{
		Use:   "train --spam PATH --ham PATH",
		Short: "Train from maildirs, mboxes, folders of .eml files or single messages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := resolveDB()
			if err != nil {
				return err
			}
			o := train
			o.DB, o.Progress = d, cmd.ErrOrStderr()
			if len(o.Spam)+len(o.Ham) == 0 {
				return fmt.Errorf("give --spam and/or --ham")
			}
			_, err = bayescli.Train(cmd.Context(), o, cmd.OutOrStdout())
			return err
		},
	}
	trainCmd.Flags().StringSliceVar(&train.Spam, "spam", nil, "spam source (repeatable)")
	trainCmd.Flags().StringSliceVar(&train.Ham, "ham", nil, "ham source (repeatable)")
	trainCmd.Flags().BoolVar(&train.Untrain, "untrain", false, "reverse an earlier training of these messages")
	trainCmd.Flags().BoolVar(&train.OnError, "on-error", false, "train only the messages now misclassified or unsure")

	var classify bayescli.ClassifyOptions
	classifyCmd := &cobra.Command{
		Use:   "classify FILE...",
		Short: "Score messages: probability of spam and verdict",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := resolveDB()
			if err != nil {
				return err
			}
			o := classify
			o.DB, o.Files = d, args
			return bayescli.Classify(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	classifyCmd.Flags().BoolVar(&classify.JSON, "json", false, "one JSON object per line")
	classifyCmd.Flags().BoolVar(&classify.Explain, "explain", false, "list the strongest tokens of each message")

	var stats bayescli.StatsOptions
	statsCmd := &cobra.Command{
		Use:   "stats",
		Short: "What the token database holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := resolveDB()
			if err != nil {
				return err
			}
			o := stats
			o.DB = d
			return bayescli.Stats(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	statsCmd.Flags().BoolVar(&stats.JSON, "json", false, "JSON")

	var prune bayescli.PruneOptions
	pruneCmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove rare tokens not seen for a long time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := resolveDB()
			if err != nil {
				return err
			}
			o := prune
			o.DB = d
			return bayescli.Prune(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	pruneCmd.Flags().DurationVar(&prune.MaxAge, "max-age", 180*24*time.Hour, "tokens not trained for this long")
	pruneCmd.Flags().IntVar(&prune.MinCount, "min-count", 1, "and seen in at most this many messages")

	var eval bayescli.EvalOptions
	var showErrors bool
	evalCmd := &cobra.Command{
		Use:   "eval (--train-spam P --train-ham P --test-spam P --test-ham P | --spam P --ham P --folds K)",
		Short: "Measure accuracy: false positive and negative rates, ROC area (--json, --roc FILE.png)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := eval
			if showErrors {
				o.Errors = cmd.ErrOrStderr()
			}
			_, err := bayescli.Eval(cmd.Context(), o, cmd.OutOrStdout())
			return err
		},
	}
	f := evalCmd.Flags()
	f.StringVar(&eval.TrainSpam, "train-spam", "", "training spam")
	f.StringVar(&eval.TrainHam, "train-ham", "", "training ham")
	f.StringVar(&eval.TestSpam, "test-spam", "", "test spam")
	f.StringVar(&eval.TestHam, "test-ham", "", "test ham")
	f.StringVar(&eval.Spam, "spam", "", "all spam, for k-fold cross-validation")
	f.StringVar(&eval.Ham, "ham", "", "all ham, for k-fold cross-validation")
	f.IntVar(&eval.Folds, "folds", 10, "number of folds")
	f.BoolVar(&eval.JSON, "json", false, "one machine-readable JSON line")
	f.StringVar(&eval.ROC, "roc", "", "write the ROC curve to this PNG file")
	f.BoolVar(&showErrors, "show-errors", false, "list the misclassified test messages on stderr")

	c.AddCommand(trainCmd, classifyCmd, statsCmd, pruneCmd, evalCmd)
	return c
}
