// Package bayescli implements the `portcullis bayes` commands (train, classify, stats,
// prune, eval) as functions taking parsed options, so that the binary only maps flags.
package bayescli
