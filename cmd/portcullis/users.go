package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/bytesize"
	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/directory"
)

// userDir is the directory that portcullis user changes: the one the config's directory
// section selects. Exactly one of db (local SQLite users), pg (the shared PostgreSQL
// directory) and ldap (read-only) is set.
type userDir struct {
	cfg  *config.Config
	db   *auth.DB
	pg   *directory.Postgres
	ldap *directory.LDAP
	conn *auth.LDAP
}

// errLDAPReadOnly is the answer to a change asked of an LDAP directory: its entries are
// the LDAP server's, changed with the LDAP tools.
var errLDAPReadOnly = errors.New("the directory is LDAP (directory.ldap), which portcullis only reads: change users, mail hosts and aliases in the LDAP server")

func openUserDir(ctx context.Context, g *globalFlags) (*userDir, error) {
	cfg, err := loadAsDataOwner(g)
	if err != nil {
		return nil, err
	}
	d := &userDir{cfg: cfg}
	switch {
	case cfg.Directory.Postgres != "":
		d.pg, err = directory.OpenPostgres(ctx, cfg.Directory.Postgres)
	case cfg.Directory.LDAP != nil:
		if d.conn, err = auth.NewLDAP(*cfg.Auth.LDAP, slog.New(slog.DiscardHandler)); err == nil {
			d.ldap, err = directory.NewLDAP(*cfg.Directory.LDAP, d.conn)
		}
	default:
		d.db, err = auth.OpenUserDB(cfg.Auth.Users, cfg.DataDir)
	}
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *userDir) close() {
	if d.db != nil {
		d.db.Close()
	}
	if d.pg != nil {
		d.pg.Close()
	}
	if d.conn != nil {
		d.conn.Close()
	}
}

// writable returns the shared directory, or the error that says why there is none to
// change: LDAP is read-only, and the local directory has no mail hosts (every user
// lives on this node) and keeps its aliases in routing.aliases.
func (d *userDir) writable(what string) (*directory.Postgres, error) {
	switch {
	case d.pg != nil:
		return d.pg, nil
	case d.ldap != nil:
		return nil, errLDAPReadOnly
	}
	return nil, fmt.Errorf("%s needs the shared directory (directory.postgres); the local directory keeps every user on this node and its aliases in routing.aliases", what)
}

// lookup asks the configured directory, without its cache.
func (d *userDir) lookup(ctx context.Context, addr string) (directory.User, error) {
	switch {
	case d.pg != nil:
		return d.pg.Lookup(ctx, addr)
	case d.ldap != nil:
		return d.ldap.Lookup(ctx, addr)
	}
	return (&directory.Local{Users: d.db, Quota: int64(d.cfg.Store.Quota)}).Lookup(ctx, addr)
}

// hash is the password hash a new or changed password gets in the shared directory: the
// local database's argon2id parameters (auth.users.argon2), which verification accepts.
func (d *userDir) hash(pw string) (string, error) {
	return auth.HashPassword(pw, d.cfg.Auth.Users.Argon2)
}

// userCmd: portcullis user add|passwd|del|list|show|host|quota|alias|move, against the
// configured directory: the local SQLite user database beside a running server (WAL
// mode), the shared PostgreSQL directory, or LDAP (read-only: show only).
func userCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage users in the configured directory (local, PostgreSQL or LDAP; works beside a running server)"}
	var stdin bool
	with := func(fn func(cmd *cobra.Command, d *userDir, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			d, err := openUserDir(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.close()
			return fn(cmd, d, args)
		}
	}
	pw := func(cmd *cobra.Command) auth.PasswordInput {
		return auth.PasswordInput{Stdin: stdin, In: cmd.InOrStdin(), Prompt: cmd.ErrOrStderr()}
	}
	var host, quota string
	add := &cobra.Command{
		Use:   "add ADDRESS [--host HOST] [--quota SIZE]",
		Short: "Add a user (password from a prompt, or the first line of stdin with --password-stdin)",
		Long: `Add a user. With the shared directory (directory.postgres), --host names the back-end
that holds the user's mailbox (a key of the hosts table of the front-ends and the proxy)
and --quota the storage limit (default: the store's).`,
		Args: cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if d.db != nil && host == "" && quota == "" {
				return auth.AddUserCmd(ctx, d.db, args[0], pw(cmd), out)
			}
			pg, err := d.writable("--host and --quota")
			if err != nil {
				return err
			}
			u := directory.User{Address: args[0], MailHost: host}
			if quota != "" {
				q, err := bytesize.Parse(quota)
				if err != nil {
					return fmt.Errorf("--quota: %w", err)
				}
				u.Quota = int64(q)
			}
			if _, err := pg.Lookup(ctx, u.Address); err == nil {
				return fmt.Errorf("%w: %s", directory.ErrExists, u.Address)
			}
			p, err := pw(cmd).Read()
			if err != nil {
				return err
			}
			if u.PasswordHash, err = d.hash(p); err != nil {
				return err
			}
			if err := pg.Add(ctx, u); err != nil {
				return err
			}
			fmt.Fprintf(out, "user %s added on %s\n", strings.ToLower(u.Address), hostName(host))
			return nil
		}),
	}
	add.Flags().StringVar(&host, "host", "", "the back-end that holds the mailbox (shared directory only)")
	add.Flags().StringVar(&quota, "quota", "", "storage limit such as 2GiB (shared directory only)")
	passwd := &cobra.Command{
		Use:   "passwd ADDRESS",
		Short: "Change a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if d.db != nil {
				return auth.PasswdCmd(ctx, d.db, args[0], pw(cmd), out)
			}
			pg, err := d.writable("passwd")
			if err != nil {
				return err
			}
			u, err := pg.Lookup(ctx, args[0])
			if err != nil {
				return err
			}
			p, err := pw(cmd).Read()
			if err != nil {
				return err
			}
			h, err := d.hash(p)
			if err != nil {
				return err
			}
			if err := pg.SetPasswordHash(ctx, u.Address, h); err != nil {
				return err
			}
			fmt.Fprintf(out, "password of %s changed\n", u.Address)
			return nil
		}),
	}
	for _, sub := range []*cobra.Command{add, passwd} {
		sub.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from the first line of stdin")
	}
	del := &cobra.Command{
		Use:   "del ADDRESS",
		Short: "Delete a user and their aliases (the mailbox stays on its back-end)",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if d.db != nil {
				return auth.DelUserCmd(ctx, d.db, args[0], out)
			}
			pg, err := d.writable("del")
			if err != nil {
				return err
			}
			if err := pg.Delete(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(out, "user %s deleted (mail is kept)\n", strings.ToLower(args[0]))
			return nil
		}),
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users (with the shared directory: mail host, state, quota, aliases)",
		Args:  cobra.NoArgs,
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if d.db != nil {
				return auth.ListUsersCmd(ctx, d.db, out)
			}
			if d.ldap != nil {
				return errors.New("the directory is LDAP (directory.ldap): list its users with ldapsearch; portcullis user show ADDRESS shows what portcullis reads of one")
			}
			users, err := d.pg.List(ctx)
			if err != nil {
				return err
			}
			return listUsers(out, users)
		}),
	}
	show := &cobra.Command{
		Use:   "show ADDRESS",
		Short: "Show what the directory says of an address: user, mail host, state, quota, aliases",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			u, err := d.lookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "address:   %s\nmail host: %s\nstate:     %s\nquota:     %s\naliases:   %s\n",
				u.Address, hostName(u.MailHost), orDash(u.State), quotaText(u.Quota), orDash(strings.Join(u.Aliases, " ")))
			return nil
		}),
	}
	hostCmd := &cobra.Command{
		Use:   "host ADDRESS HOST",
		Short: "Set the back-end that holds a user's mailbox, without moving mail (see user move)",
		Long: `Set the mail host of a user in the shared directory: front-ends deliver to HOST and the
proxy sends the user's sessions there from the next directory lookup (within
directory.cache_ttl). No mail is copied: for a user with mail, use portcullis user move.`,
		Args: cobra.ExactArgs(2),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			pg, err := d.writable("host")
			if err != nil {
				return err
			}
			if err := pg.SetMailHost(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now lives on %s\n", strings.ToLower(args[0]), hostName(args[1]))
			return nil
		}),
	}
	quotaCmd := &cobra.Command{
		Use:   "quota ADDRESS SIZE",
		Short: "Set a user's storage limit (0: the store's default)",
		Args:  cobra.ExactArgs(2),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			pg, err := d.writable("quota")
			if err != nil {
				return err
			}
			q, err := bytesize.Parse(args[1])
			if err != nil {
				return err
			}
			if err := pg.SetQuota(cmd.Context(), args[0], int64(q)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "quota of %s set to %s\n", strings.ToLower(args[0]), quotaText(int64(q)))
			return nil
		}),
	}
	alias := &cobra.Command{Use: "alias", Short: "Add and remove a user's aliases in the shared directory"}
	alias.AddCommand(&cobra.Command{
		Use:   "add ADDRESS ALIAS",
		Short: "Deliver mail for ALIAS to the user ADDRESS",
		Args:  cobra.ExactArgs(2),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			pg, err := d.writable("alias")
			if err != nil {
				return err
			}
			if err := pg.AddAlias(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alias %s of %s added\n", strings.ToLower(args[1]), strings.ToLower(args[0]))
			return nil
		}),
	}, &cobra.Command{
		Use:   "del ALIAS",
		Short: "Remove an alias",
		Args:  cobra.ExactArgs(1),
		RunE: with(func(cmd *cobra.Command, d *userDir, args []string) error {
			pg, err := d.writable("alias")
			if err != nil {
				return err
			}
			if err := pg.DeleteAlias(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alias %s removed\n", strings.ToLower(args[0]))
			return nil
		}),
	})
	c.AddCommand(add, passwd, del, list, show, hostCmd, quotaCmd, alias, userMoveCmd(g))
	return c
}

func listUsers(w io.Writer, users []directory.User) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tMAIL HOST\tSTATE\tQUOTA\tALIASES\tCHANGED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Address, hostName(u.MailHost), orDash(u.State), quotaText(u.Quota),
			orDash(strings.Join(u.Aliases, ",")), u.Changed.UTC().Format("2006-01-02 15:04:05Z"))
	}
	return tw.Flush()
}

func hostName(h string) string {
	if h == directory.HostHere {
		return "(this node)"
	}
	return h
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func quotaText(q int64) string {
	if q == 0 {
		return "default"
	}
	return bytesize.Size(q).String()
}
