// Command bayes-eval runs the bayes CLI functions (train, classify, stats, eval, tune)
// without the portcullis binary; bench/bayes.sh builds and uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/portcullis-mail/portcullis/bayes/bayescli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bayes-eval eval|tune [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var err error
	switch cmd {
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
		fs.StringVar(&o.DB, "db", "", "")
		showErr := fs.Bool("show-errors", false, "")
		fs.Parse(args)
		if *showErr {
			o.Errors = os.Stderr
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
