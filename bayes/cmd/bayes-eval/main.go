// Command bayes-eval runs the bayes CLI functions (train, classify, stats, prune, eval,
// tune) without the portcullis binary; bench/bayes.sh builds and uses it. Its flags are
// those of `portcullis bayes ...`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/portcullis-mail/portcullis/bayes/bayescli"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bayes-eval train|classify|stats|prune|eval|tune|tokens [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var db bayescli.DB
	fs.StringVar(&db.Path, "db", "bayes.db", "token database")
	fs.StringVar(&db.User, "user", "", "use this user's database")
	var err error
	switch cmd {
	case "train":
		o := bayescli.TrainOptions{Progress: os.Stderr}
		fs.Var((*list)(&o.Spam), "spam", "spam mailbox (repeatable)")
		fs.Var((*list)(&o.Ham), "ham", "ham mailbox (repeatable)")
		fs.BoolVar(&o.Untrain, "untrain", false, "reverse an earlier training")
		fs.BoolVar(&o.OnError, "on-error", false, "train only misclassified messages")
		fs.Parse(args)
		o.DB = db
		_, err = bayescli.Train(ctx, o, os.Stdout)
	case "classify":
		var o bayescli.ClassifyOptions
		fs.BoolVar(&o.JSON, "json", false, "JSON lines")
		fs.BoolVar(&o.Explain, "explain", false, "show the strongest tokens")
		fs.Parse(args)
		o.DB, o.Files = db, fs.Args()
		err = bayescli.Classify(ctx, o, os.Stdout)
	case "stats":
		var o bayescli.StatsOptions
		fs.BoolVar(&o.JSON, "json", false, "JSON")
		fs.Parse(args)
		o.DB = db
		err = bayescli.Stats(ctx, o, os.Stdout)
	case "prune":
		var o bayescli.PruneOptions
		fs.DurationVar(&o.MaxAge, "max-age", 180*24*time.Hour, "")
		fs.IntVar(&o.MinCount, "min-count", 1, "")
		fs.Parse(args)
		o.DB = db
		err = bayescli.Prune(ctx, o, os.Stdout)
	case "eval":
		var o bayescli.EvalOptions
		fs.StringVar(&o.TrainSpam, "train-spam", "", "")
		fs.StringVar(&o.TrainHam, "train-ham", "", "")
		fs.StringVar(&o.TestSpam, "test-spam", "", "")
		fs.StringVar(&o.TestHam, "test-ham", "", "")
		fs.StringVar(&o.Spam, "spam", "", "")
		fs.StringVar(&o.Ham, "ham", "", "")
		fs.IntVar(&o.Folds, "folds", 10, "")
		fs.BoolVar(&o.JSON, "json", false, "")
		fs.StringVar(&o.ROC, "roc", "", "")
		showErr := fs.Bool("show-errors", false, "")
		fs.BoolVar(&o.Config.Tokenizer.NoShapes, "no-shapes", false, "tokenizer without shape tokens")
		fs.BoolVar(&o.Config.Tokenizer.NoRcvdDomains, "no-rcvd-domains", false, "tokenizer without Received domain tokens")
		fs.IntVar(&o.Config.TunePasses, "tune-passes", 0, "train-until-no-error passes (0: default, -1: off)")
		fs.Float64Var(&o.Config.TuneMargin, "tune-margin", 0, "train-until-no-error margin (0: default)")
		fs.Parse(args)
		if *showErr {
			o.Errors = os.Stderr
		}
		if db.Path != "bayes.db" {
			o.DB = db.Path
		}
		_, err = bayescli.Eval(ctx, o, os.Stdout)
	case "tune":
		var o bayescli.TuneOptions
		fs.StringVar(&o.Spam, "spam", "", "")
		fs.StringVar(&o.Ham, "ham", "", "")
		fs.IntVar(&o.Folds, "folds", 10, "")
		fs.StringVar(&o.Grid, "grid", "", "")
		fs.Parse(args)
		err = bayescli.Tune(ctx, o, os.Stdout)
	case "tokens":
		err = dumpTokens(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bayes-eval:", err)
		os.Exit(1)
	}
}
