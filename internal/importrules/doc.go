// Package importrules holds no code: its test keeps the dependency rules of the tree
// true (the presubmit habit of CoreDNS and chasquid). Dependencies point inward, through
// small interfaces owned by the consumer: the SMTP server does not link the mailbox
// store, the user database or the queue manager; the rule engine knows no policy; a
// policy knows no server; library packages never import config or cmd. When a rule
// fails, define the interface where it is used instead of importing the package that
// implements it.
package importrules
