// Command bayes-eval runs `portcullis bayes train`, `classify` and `eval` (the
// bayescli functions) in a binary that links nothing else, so that bench/bayes.sh
// compares the classifier as a process with bogofilter without the start-up of the
// whole server binary; its flags are those of `portcullis bayes ...`. `tokens FILE...`
// prints the tokens of messages.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/portcullis-mail/portcullis/bayes/bayescli"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bayes-eval train|classify|eval|tokens [flags]")
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
	case "eval":
		var o bayescli.EvalOptions
		fs.StringVar(&o.TrainSpam, "train-spam", "", "training spam")
		fs.StringVar(&o.TrainHam, "train-ham", "", "training ham")
		fs.StringVar(&o.TestSpam, "test-spam", "", "test spam")
		fs.StringVar(&o.TestHam, "test-ham", "", "test ham")
		fs.StringVar(&o.Spam, "spam", "", "all spam, for k-fold cross-validation")
		fs.StringVar(&o.Ham, "ham", "", "all ham, for k-fold cross-validation")
		fs.IntVar(&o.Folds, "folds", 10, "number of folds")
		fs.BoolVar(&o.JSON, "json", false, "one machine-readable JSON line")
		fs.StringVar(&o.ROC, "roc", "", "write the ROC curve to this PNG file")
		showErr := fs.Bool("show-errors", false, "list the misclassified test messages on stderr")
		fs.Parse(args)
		if *showErr {
			o.Errors = os.Stderr
		}
		_, err = bayescli.Eval(ctx, o, os.Stdout)
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
