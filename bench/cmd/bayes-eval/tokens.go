package main

import (
	"fmt"
	"os"

	"github.com/portcullis-mail/portcullis/bayes"
)

func dumpTokens(files []string) error {
	tok := bayes.NewTokenizer(bayes.DefaultTokenizerConfig())
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		ts := tok.Tokens(raw)
		fmt.Printf("%s: %d tokens\n", f, len(ts))
		for _, t := range ts {
			fmt.Printf("  %q\n", t)
		}
	}
	return nil
}
