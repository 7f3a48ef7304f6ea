package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/managesieve"
	"github.com/portcullis-mail/portcullis/sieve"
	"github.com/portcullis-mail/portcullis/store"
)

// newManageSieve builds the ManageSieve server of serve: the store's scripts, the shared
// authenticator, delivery's compiler as the checker, sieve's quotas.
func newManageSieve(cfg *config.Config, tlsCfg *tls.Config, st *store.Store, authn auth.Authenticator, logger *slog.Logger) (*managesieve.Server, error) {
	sc := cfg.Sieve.WithDefaults()
	mcfg := cfg.ManageSieve.Config
	mcfg.TLSConfig = tlsCfg
	lim := sc.ScriptLimits()
	mcfg.MaxScripts, mcfg.MaxScriptSize, mcfg.MaxRedirects = lim.MaxScripts, sc.MaxScriptSize, sc.MaxRedirects
	return managesieve.New(mcfg, managesieve.Deps{Store: st, Auth: authn, Logger: logger,
		Checker: sc.NewChecker(cfg.Routing.RecipientDelimiter)})
}

// sieveCmd: portcullis sieve check|test|put|get|list|activate|deactivate|delete. The
// script commands open the user's scripts in the store index directly
// (store.OpenScripts), beside a running server: SQLite orders the writers, and delivery
// reads the active script at each message.
func sieveCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "sieve", Short: "Check and test Sieve scripts; manage users' scripts (works beside a running server)"}
	var user string
	loadCfg := func() (*config.Config, error) { return config.Load(g.config, g.data) }
	check := &cobra.Command{
		Use:   "check SCRIPT",
		Short: "Compile a script as delivery does; print its warnings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadCfg()
			if err != nil {
				return err
			}
			src, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			w, err := cfg.Sieve.NewChecker(cfg.Routing.RecipientDelimiter).Check(src)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if w != "" {
				fmt.Fprintln(cmd.OutOrStdout(), w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
	var from, rcpt string
	test := &cobra.Command{
		Use:   "test SCRIPT MSG.eml",
		Short: "Run a script on a message and print the actions, as Pigeonhole's sieve-test does",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadCfg()
			if err != nil {
				return err
			}
			src, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			msg, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			s, err := sieve.Compile(src, cfg.Sieve.Options(cfg.Routing.RecipientDelimiter, nil))
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			res, err := s.Run(cmd.Context(), sieve.NewMessage(msg), sieve.Envelope{From: from, To: rcpt}, nil)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", args[0], err)
			}
			if res == nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), res.String())
			return err
		},
	}
	test.Flags().StringVar(&from, "from", "sender@example.net", "envelope sender")
	test.Flags().StringVar(&rcpt, "rcpt", "recipient@example.test", "envelope recipient")

	withScripts := func(fn func(ctx context.Context, cfg *config.Config, sc *store.Scripts, w io.Writer, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return errors.New("--user ADDRESS is required")
			}
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			sc, err := store.OpenScripts(cmd.Context(), cfg.Store, strings.ToLower(user))
			if err != nil {
				return err
			}
			defer sc.Close()
			return fn(cmd.Context(), cfg, sc, cmd.OutOrStdout(), args)
		}
	}
	put := &cobra.Command{
		Use:   "put --user ADDRESS NAME FILE",
		Short: "Store a script for a user (checked first; - reads standard input)",
		Args:  cobra.ExactArgs(2),
		RunE: withScripts(func(ctx context.Context, cfg *config.Config, sc *store.Scripts, w io.Writer, args []string) error {
			var src []byte
			var err error
			if args[1] == "-" {
				src, err = io.ReadAll(io.LimitReader(os.Stdin, int64(cfg.Sieve.WithDefaults().MaxScriptSize)+1))
			} else {
				src, err = os.ReadFile(args[1])
			}
			if err != nil {
				return err
			}
			warn, err := cfg.Sieve.NewChecker(cfg.Routing.RecipientDelimiter).Check(src)
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			if warn != "" {
				fmt.Fprintln(w, warn)
			}
			return sc.Put(ctx, args[0], src, cfg.Sieve.ScriptLimits())
		}),
	}
	get := &cobra.Command{
		Use:   "get --user ADDRESS NAME",
		Short: "Print a user's script",
		Args:  cobra.ExactArgs(1),
		RunE: withScripts(func(ctx context.Context, _ *config.Config, sc *store.Scripts, w io.Writer, args []string) error {
			b, err := sc.Get(ctx, args[0])
			if err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}),
	}
	list := &cobra.Command{
		Use:   "list --user ADDRESS",
		Short: "List a user's scripts",
		Args:  cobra.NoArgs,
		RunE: withScripts(func(ctx context.Context, _ *config.Config, sc *store.Scripts, w io.Writer, _ []string) error {
			l, err := sc.List(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tACTIVE\tMODIFIED")
			for _, s := range l {
				act := ""
				if s.Active {
					act = "yes"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Name, s.Size, act, s.Modified.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		}),
	}
	activate := &cobra.Command{
		Use:   "activate --user ADDRESS NAME",
		Short: "Make a script the user's active one (checked first)",
		Args:  cobra.ExactArgs(1),
		RunE: withScripts(func(ctx context.Context, cfg *config.Config, sc *store.Scripts, _ io.Writer, args []string) error {
			b, err := sc.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if _, err := cfg.Sieve.NewChecker(cfg.Routing.RecipientDelimiter).Check(b); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return sc.SetActive(ctx, args[0])
		}),
	}
	deactivate := &cobra.Command{
		Use:   "deactivate --user ADDRESS",
		Short: "Leave the user without an active script",
		Args:  cobra.NoArgs,
		RunE: withScripts(func(ctx context.Context, _ *config.Config, sc *store.Scripts, _ io.Writer, _ []string) error {
			return sc.SetActive(ctx, "")
		}),
	}
	del := &cobra.Command{
		Use:   "delete --user ADDRESS NAME",
		Short: "Delete a user's script (not the active one)",
		Args:  cobra.ExactArgs(1),
		RunE: withScripts(func(ctx context.Context, _ *config.Config, sc *store.Scripts, _ io.Writer, args []string) error {
			return sc.Delete(ctx, args[0])
		}),
	}
	for _, sub := range []*cobra.Command{put, get, list, activate, deactivate, del} {
		sub.Flags().StringVar(&user, "user", "", "the user's address")
	}
	c.AddCommand(check, test, put, get, list, activate, deactivate, del)
	return c
}
