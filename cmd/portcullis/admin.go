package main

import (
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/spool"
)

// queueCmd: portcullis queue list|show|flush|hold|release|delete, in the spirit of
// postqueue/postsuper; the running server picks changes up at its next rescan.
func queueCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "queue", Short: "Inspect and manage the mail queue (works beside a running server)"}
	withSpool := func(fn func(sp *spool.Spool, w io.Writer, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			sp, err := spool.Open(filepath.Join(cfg.DataDir, "queue"), spool.Config{Shared: true})
			if err != nil {
				return err
			}
			defer sp.Close()
			return fn(sp, cmd.OutOrStdout(), args)
		}
	}
	byID := func(use, short string, fn func(*spool.Spool, io.Writer, string) error) *cobra.Command {
		return &cobra.Command{Use: use + " ID|ALL", Short: short, Args: cobra.ExactArgs(1),
			RunE: withSpool(func(sp *spool.Spool, w io.Writer, args []string) error { return fn(sp, w, args[0]) })}
	}
	c.AddCommand(
		&cobra.Command{Use: "list", Short: "List queued messages: id, state, size, age, sender, recipients", Args: cobra.NoArgs,
			RunE: withSpool(func(sp *spool.Spool, w io.Writer, _ []string) error { return queueList(sp, w) })},
		&cobra.Command{Use: "show ID", Short: "Show a message's envelope, recipient states and header", Args: cobra.ExactArgs(1),
			RunE: withSpool(func(sp *spool.Spool, w io.Writer, args []string) error { return queueShow(sp, w, args[0]) })},
		byID("flush", "Make a deferred message due now", queueFlush),
		byID("hold", "Put a message on hold", queueHold),
		byID("release", "Take a message off hold", queueRelease),
		byID("delete", "Delete a message without delivering or bouncing it", queueDelete),
	)
	return c
}
