package main

import (
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/spool"
)

// userCmd: portcullis user add|passwd|del|list, against the data dir of a server that may
// be running (the user database is SQLite in WAL mode).
func userCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage local users (works beside a running server)"}
	var stdin bool
	withDB := func(fn func(cmd *cobra.Command, db *auth.DB, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			db, err := auth.OpenUserDB(cfg.Auth.Users, cfg.DataDir)
			if err != nil {
				return err
			}
			defer db.Close()
			return fn(cmd, db, args)
		}
	}
	pw := func(cmd *cobra.Command) auth.PasswordInput {
		return auth.PasswordInput{Stdin: stdin, In: cmd.InOrStdin(), Prompt: cmd.ErrOrStderr()}
	}
	add := &cobra.Command{
		Use:   "add ADDRESS",
		Short: "Add a user (password from a prompt, or the first line of stdin with --password-stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: withDB(func(cmd *cobra.Command, db *auth.DB, args []string) error {
			return auth.AddUserCmd(cmd.Context(), db, args[0], pw(cmd), cmd.OutOrStdout())
		}),
	}
	passwd := &cobra.Command{
		Use:   "passwd ADDRESS",
		Short: "Change a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: withDB(func(cmd *cobra.Command, db *auth.DB, args []string) error {
			return auth.PasswdCmd(cmd.Context(), db, args[0], pw(cmd), cmd.OutOrStdout())
		}),
	}
	for _, sub := range []*cobra.Command{add, passwd} {
		sub.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	}
	del := &cobra.Command{
		Use:   "del ADDRESS",
		Short: "Delete a user (the mailbox stays on disk)",
		Args:  cobra.ExactArgs(1),
		RunE: withDB(func(cmd *cobra.Command, db *auth.DB, args []string) error {
			return auth.DelUserCmd(cmd.Context(), db, args[0], cmd.OutOrStdout())
		}),
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  cobra.NoArgs,
		RunE: withDB(func(cmd *cobra.Command, db *auth.DB, args []string) error {
			return auth.ListUsersCmd(cmd.Context(), db, cmd.OutOrStdout())
		}),
	}
	c.AddCommand(add, passwd, del, list)
	return c
}

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
