// Package bayes is a statistical (Bayesian) content scorer for mail.
//
// A Tokenizer turns a raw RFC 5322 message into a set of 64-bit token hashes: header
// fields with their names as prefixes, words of the decoded text and HTML-reduced body
// parts, pieces of URLs, patterns ("shapes") of the Message-ID and MIME boundaries and
// "skip" tokens for overlong words.
// A Classifier looks the tokens up in a Store (in memory, SQLite under the data dir, or
// PostgreSQL shared by several nodes, each holding the table in memory),
// computes Gary Robinson's per-token probability f(w) with strength s and assumed
// probability x, and combines the strongest tokens with Fisher's method (the chi-square
// combining of SpamBayes), giving a spam probability in [0,1] and an "unsure" band.
//
// The package stands alone: Classifier.Classify, Train, Untrain and TrainOnError work on
// raw message bytes. Policy adapts it to the portcullis rule engine (stage data).
// The defaults were chosen by k-fold cross-validation on the training split of the
// SpamAssassin public corpus only; see README.md and docs/bayes-experiments.md.
package bayes
