package main

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/storetarget"
	"github.com/portcullis-mail/portcullis/store"
)

// migrateFlags are shared by the mailbox migrations.
type migrateFlags struct {
	maps      []string
	excludes  []string
	dryRun    bool
	syncFlags bool
	strict    bool
	keepUIDs  bool
	state     string
	quiet     bool
	batch     int
	window    int
}

func (f *migrateFlags) add(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.maps, "map", nil, "rename a source folder and its subfolders: OLD=NEW (repeatable)")
	c.Flags().StringArrayVar(&f.excludes, "exclude", nil, "skip source folders whose name matches this regular expression (repeatable)")
	c.Flags().BoolVar(&f.dryRun, "dry-run", false, "read the source and report what would be copied, changing nothing")
	c.Flags().BoolVar(&f.syncFlags, "sync-flags", false, "also set the flags of messages copied before to the source's current flags")
	c.Flags().BoolVar(&f.strict, "delete", false, "strict mode: remove target messages that are not at the source (only before the MX points at portcullis!)")
	c.Flags().BoolVar(&f.keepUIDs, "keep-uids", true, "give new empty target folders the source's UIDVALIDITY and UIDs")
	c.Flags().StringVar(&f.state, "state", "", "state database (default: migrate-state.sqlite in each target user's store directory)")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar")
	c.Flags().IntVar(&f.batch, "batch", 64, "messages whose intent is committed together")
	c.Flags().IntVar(&f.window, "window", 5000, "messages of a folder listed at once from an IMAP source (memory)")
}

func (f *migrateFlags) options(source, user string) (migrate.Options, error) {
	o := migrate.Options{Source: source, TargetUser: user, DryRun: f.dryRun, SyncFlags: f.syncFlags,
		Delete: f.strict, KeepUIDs: f.keepUIDs, Batch: f.batch, Window: f.window, Map: map[string]string{}}
	for _, m := range f.maps {
		old, nw, ok := strings.Cut(m, "=")
		if !ok || old == "" || nw == "" {
			return o, fmt.Errorf("--map %q: want OLD=NEW", m)
		}
		o.Map[old] = nw
	}
	for _, e := range f.excludes {
		re, err := regexp.Compile(e)
		if err != nil {
			return o, fmt.Errorf("--exclude %q: %w", e, err)
		}
		o.Exclude = append(o.Exclude, re)
	}
	return o, nil
}

// migrateEnv is what every migration command opens: the store, the progress bar and the
// results.
type migrateEnv struct {
	f     *migrateFlags
	store *store.Store
	bar   *barProgress
	out   io.Writer
	log   *slog.Logger
	start time.Time

	mu      sync.Mutex
	results []migrate.Result
	states  map[string]*migrate.State
}

func openMigrateEnv(cmd *cobra.Command, g *globalFlags, f *migrateFlags) (*migrateEnv, error) {
	cfg, err := loadAsDataOwner(g)
	if err != nil {
		return nil, err
	}
	st, err := store.New(cfg.Store)
	if err != nil {
		return nil, err
	}
	e := &migrateEnv{f: f, store: st, out: cmd.OutOrStdout(), start: time.Now(), states: map[string]*migrate.State{},
		log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.bar = newBarProgress(cmd.ErrOrStderr(), f.quiet)
	return e, nil
}

func (e *migrateEnv) close() {
	e.bar.finish()
	for _, s := range e.states {
		s.Close()
	}
	e.store.Close()
}

func (e *migrateEnv) stateFor(user string) (*migrate.State, error) {
	path := e.f.state
	if path == "" {
		dir, err := e.store.UserDir(user)
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, "migrate-state.sqlite")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.states[path]; ok {
		return s, nil
	}
	s, err := migrate.OpenState(path)
	if err != nil {
		return nil, err
	}
	e.states[path] = s
	return s, nil
}

// run migrates one user from src.
func (e *migrateEnv) run(ctx context.Context, src migrate.Source, source, user string) error {
	defer src.Close()
	opt, err := e.f.options(source, user)
	if err != nil {
		return err
	}
	opt.Progress, opt.Logger = e.bar, e.log
	st, err := e.stateFor(user)
	if err != nil {
		return err
	}
	tg, err := storetarget.Open(ctx, e.store, user)
	if err != nil {
		return err
	}
	defer tg.Close()
	res, err := migrate.Run(ctx, src, tg, st, opt)
	if err != nil {
		res.Err = err
	}
	e.mu.Lock()
	e.results = append(e.results, res)
	e.mu.Unlock()
	return err
}

// summary prints the table of what was done and returns an error when anything failed.
func (e *migrateEnv) summary() error {
	e.bar.finish()
	w := tabwriter.NewWriter(e.out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tFOLDER\tTARGET\tSOURCE\tCOPIED\tADOPTED\tFLAGS\tREMOVED\tFAILED\tMiB\t")
	var total migrate.FolderResult
	failed := 0
	for _, r := range e.results {
		for _, f := range r.Folders {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t\n", r.User, f.Source, f.Target, f.SourceMessages, f.Copied, f.Adopted, f.FlagsSynced, f.Removed, f.Failed, float64(f.Bytes)/(1<<20))
			if f.Err != nil {
				failed++
			}
		}
		t := r.Totals()
		total.SourceMessages += t.SourceMessages
		total.Copied += t.Copied
		total.Adopted += t.Adopted
		total.FlagsSynced += t.FlagsSynced
		total.Removed += t.Removed
		total.Failed += t.Failed
		total.Bytes += t.Bytes
		if r.Err != nil {
			failed++
		}
	}
	el := time.Since(e.start)
	fmt.Fprintf(w, "TOTAL\t%d users\t\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t\n", len(e.results), total.SourceMessages, total.Copied, total.Adopted, total.FlagsSynced, total.Removed, total.Failed, float64(total.Bytes)/(1<<20))
	w.Flush()
	verb := "copied"
	if e.f.dryRun {
		verb = "would copy"
	}
	fmt.Fprintf(e.out, "%s %d messages in %s (%.0f messages/s)\n", verb, total.Copied, el.Round(time.Millisecond), float64(total.Copied)/max(el.Seconds(), 1e-3))
	for _, r := range e.results {
		if r.Err != nil {
			fmt.Fprintf(e.out, "error: %s: %v\n", r.User, r.Err)
		}
		for _, f := range r.Folders {
			if f.Err != nil {
				fmt.Fprintf(e.out, "error: %s %q: %v\n", r.User, f.Source, f.Err)
			}
		}
	}
	if failed > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d folders or users failed (see above); run again to retry them", failed)}
	}
	return nil
}

// barProgress is migrate.Progress on a terminal progress bar with rate and ETA.
type barProgress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int64
}

func newBarProgress(w io.Writer, quiet bool) *barProgress {
	b := &barProgress{w: w}
	if !quiet {
		b.bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("migrate"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("msg"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(250*time.Millisecond), progressbar.OptionSetWidth(30))
	}
	return b
}

func (b *barProgress) AddTotal(n int) {
	if b.bar == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(n)
	// One more than known: a bar that reaches its maximum finishes, and more folders may
	// come.
	b.bar.ChangeMax64(b.total + 1)
}

func (b *barProgress) Add(n int) {
	if b.bar != nil {
		b.bar.Add(n)
	}
}

func (b *barProgress) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.bar.ChangeMax64(max(b.total, 1))
		b.bar.Finish()
		fmt.Fprintln(b.w) // the bar ends its line with no newline
		b.bar = nil
	}
}

// signalContext is cancelled by SIGINT or SIGTERM: the run stops between two messages and
// the next one picks up where it stopped.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func migrateCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Move users and mail from an old mail system (IMAP, maildir, mbox, LDAP/CSV users)",
		Long: `Move users and mail from an old mail system into portcullis.

Mailbox migrations are exact (bytes, flags and keywords, internal dates, POP3 UIDLs,
subscriptions, special-use folders) and incremental: a state database records what was
copied, so running the same command again copies only new mail (--sync-flags also carries
flag changes over, --delete removes target messages gone from the source), and a run that
was interrupted, even killed, resumes without duplicates.`,
	}
	c.AddCommand(migrateImapCmd(g), migrateMaildirCmd(g), migrateMboxCmd(g), migrateUsersCmd(g), migrateSieveCmd(g))
	return c
}

func readSecret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv(env), nil
}

func migrateImapCmd(g *globalFlags) *cobra.Command {
	f := &migrateFlags{}
	var host, security, user, pwFile, master, pop3, target, usersFile string
	var insecure bool
	var parallel int
	c := &cobra.Command{
		Use:   "imap --host HOST:PORT (--user USER | --users FILE.csv)",
		Short: "Copy mailboxes from an IMAP server (one user or many in parallel)",
		Long: `Copy every folder and message of a user from an IMAP server.

The password is read from --password-file or $PORTCULLIS_MIGRATE_PASSWORD. With --master,
the login is the master/admin user on behalf of --user (SASL PLAIN authorization identity,
e.g. Dovecot master users): one password reads every mailbox.

--users FILE.csv migrates many users, --parallel at a time. Columns: user, password,
target (optional: the portcullis address; default the user); with --master the password
column may be empty.

With --pop3 the source's POP3 UIDLs of INBOX are read and kept, so POP3 clients that
leave mail on the server do not download it again.`,
		Args: cobra.NoArgs,
		Example: `  portcullis migrate imap --host old.example.org:993 --user alice@example.org --password-file pw
  portcullis migrate imap --host old:143 --security starttls --master admin --password-file master.pw \
      --users users.csv --parallel 8 --pop3 tls:old:995 --exclude '^Shared/'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if host == "" || (user == "") == (usersFile == "") {
				return errors.New("migrate imap: --host and exactly one of --user and --users are required")
			}
			pw, err := readSecret(pwFile, "PORTCULLIS_MIGRATE_PASSWORD")
			if err != nil {
				return err
			}
			type job struct{ user, pw, target string }
			var jobs []job
			if user != "" {
				if target == "" {
					target = user
				}
				jobs = append(jobs, job{user, pw, target})
			} else {
				fh, err := os.Open(usersFile)
				if err != nil {
					return err
				}
				recs, err := csv.NewReader(fh).ReadAll()
				fh.Close()
				if err != nil {
					return fmt.Errorf("--users %s: %w", usersFile, err)
				}
				for i, r := range recs {
					if i == 0 && len(r) > 0 && strings.EqualFold(r[0], "user") {
						continue
					}
					j := job{user: r[0], pw: pw, target: r[0]}
					if len(r) > 1 && r[1] != "" {
						j.pw = r[1]
					}
					if len(r) > 2 && r[2] != "" {
						j.target = r[2]
					}
					jobs = append(jobs, j)
				}
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			env, err := openMigrateEnv(cmd, g, f)
			if err != nil {
				return err
			}
			defer env.close()
			var tc *tls.Config
			if insecure {
				tc = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by --insecure-skip-verify
			}
			sem := make(chan struct{}, max(parallel, 1))
			var wg sync.WaitGroup
			for _, j := range jobs {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					cfg := migrate.ImapConfig{Addr: host, Security: security, TLSConfig: tc, User: j.user, Password: j.pw, Master: master, POP3Addr: pop3}
					src, err := migrate.DialImap(ctx, cfg)
					if err != nil {
						env.mu.Lock()
						env.results = append(env.results, migrate.Result{User: j.target, Err: err})
						env.mu.Unlock()
						return
					}
					env.run(ctx, src, "imap://"+host+"/"+j.user, strings.ToLower(j.target))
				}()
			}
			wg.Wait()
			return env.summary()
		},
	}
	c.Flags().StringVar(&host, "host", "", "the source IMAP server, HOST:PORT")
	c.Flags().StringVar(&security, "security", "tls", "tls (implicit, port 993), starttls, or none (trusted networks only)")
	c.Flags().BoolVar(&insecure, "insecure-skip-verify", false, "accept any TLS certificate of the source")
	c.Flags().StringVar(&user, "user", "", "the source user to migrate")
	c.Flags().StringVar(&pwFile, "password-file", "", "file holding the password (of the user, or of --master)")
	c.Flags().StringVar(&master, "master", "", "log in as this master/admin user on behalf of each user")
	c.Flags().StringVar(&pop3, "pop3", "", "the source's POP3 server (HOST:PORT, or tls:HOST:PORT) to keep INBOX UIDLs")
	c.Flags().StringVar(&target, "target", "", "the portcullis user (default: --user)")
	c.Flags().StringVar(&usersFile, "users", "", "CSV of users to migrate: user,password,target")
	c.Flags().IntVar(&parallel, "parallel", 4, "users migrated at once with --users")
	f.add(c)
	return c
}

func migrateMaildirCmd(g *globalFlags) *cobra.Command {
	f := &migrateFlags{}
	var target string
	var noUIDL, xuidl bool
	c := &cobra.Command{
		Use:   "maildir --target USER MAILDIR",
		Short: "Import a Dovecot or Courier maildir (Maildir++ folders, keywords, UIDs, UIDLs)",
		Long: `Import a user's maildir as Dovecot or Courier keep it: Maildir++ folders (".A.B", names
in modified UTF-7), flags from the file names, keywords from dovecot-keywords, the
internal date from the file's mtime, UIDVALIDITY and UIDs from dovecot-uidlist or
courierimapuiddb (kept in new folders), POP3 UIDLs from dovecot-uidlist or, by default,
in Dovecot's default format (%08Xu%08Xv), and subscriptions.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return errors.New("migrate maildir: --target is required")
			}
			src, err := migrate.NewMaildirSource(args[0])
			if err != nil {
				return err
			}
			src.DovecotUIDL, src.XUIDL = !noUIDL, xuidl
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			env, err := openMigrateEnv(cmd, g, f)
			if err != nil {
				return err
			}
			defer env.close()
			abs, _ := filepath.Abs(args[0])
			env.run(ctx, src, "maildir:"+abs, strings.ToLower(target))
			return env.summary()
		},
	}
	c.Flags().StringVar(&target, "target", "", "the portcullis user")
	c.Flags().BoolVar(&noUIDL, "no-dovecot-uidl", false, "do not derive POP3 UIDLs in Dovecot's default format from the UIDs")
	c.Flags().BoolVar(&xuidl, "x-uidl", false, "take POP3 UIDLs from X-UIDL headers where dovecot-uidlist has none (pop3_reuse_xuidl)")
	f.add(c)
	return c
}

func migrateMboxCmd(g *globalFlags) *cobra.Command {
	f := &migrateFlags{}
	var target, folder string
	c := &cobra.Command{
		Use:   "mbox --target USER (FILE | DIR)",
		Short: "Import mbox files (Status, X-Status, X-Keywords kept as flags)",
		Long: `Import mbox files: one FILE into --folder (default INBOX), or a DIR holding one mbox file
per folder (subdirectories nest; Thunderbird's NAME.sbd too). Flags come from Status,
X-Status and X-Keywords, the internal date from the From line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return errors.New("migrate mbox: --target is required")
			}
			src, err := migrate.NewMboxSource(args[0], folder)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			env, err := openMigrateEnv(cmd, g, f)
			if err != nil {
				return err
			}
			defer env.close()
			abs, _ := filepath.Abs(args[0])
			env.run(ctx, src, "mbox:"+abs, strings.ToLower(target))
			return env.summary()
		},
	}
	c.Flags().StringVar(&target, "target", "", "the portcullis user")
	c.Flags().StringVar(&folder, "folder", "", "the folder a single mbox file goes into (default INBOX)")
	f.add(c)
	return c
}

func migrateUsersCmd(g *globalFlags) *cobra.Command {
	var csvFile, aliasesOut string
	var lu migrate.LDAPUsers
	var ldapPwFile string
	var dryRun bool
	c := &cobra.Command{
		Use:   "users (--csv FILE | --ldap-url URL --ldap-base DN)",
		Short: "Create users and aliases from an LDAP directory or a CSV, keeping password hashes",
		Long: `Create the users of the old system, keeping their password hashes when portcullis can
verify the scheme ({SSHA}, {SSHA256}, {SSHA512}, {SHA256-CRYPT}, {SHA512-CRYPT}, bcrypt
{BLF-CRYPT}, {ARGON2I}, {ARGON2ID}; {PLAIN} is hashed now): users keep their passwords,
and each hash is replaced by argon2id at the user's first login. Accounts whose hash
cannot be verified are listed and not created.

CSV columns (header row): address, password, aliases (space-separated, optional).
Aliases are appended to the virtual alias file (routing.virtual_aliases, or --aliases-out)
as "alias address" lines.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (csvFile == "") == (lu.URL == "") {
				return errors.New("migrate users: exactly one of --csv and --ldap-url is required")
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			var accts []migrate.Account
			if csvFile != "" {
				fh, err := os.Open(csvFile)
				if err != nil {
					return err
				}
				accts, err = migrate.ReadUsersCSV(fh)
				fh.Close()
				if err != nil {
					return err
				}
			} else {
				if lu.Password, err = readSecret(ldapPwFile, "PORTCULLIS_LDAP_PASSWORD"); err != nil {
					return err
				}
				if accts, err = migrate.ReadUsersLDAP(ctx, lu); err != nil {
					return err
				}
			}
			db, err := auth.OpenUserDB(cfg.Auth.Users, cfg.DataDir)
			if err != nil {
				return err
			}
			defer db.Close()
			res, aliases, err := migrate.ImportUsers(ctx, accts, db, auth.CheckHash, dryRun)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			w := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
			fmt.Fprintln(w, "ADDRESS\tSCHEME\tACTION\tREASON")
			counts := map[string]int{}
			for _, r := range res {
				counts[r.Action]++
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Address, r.Scheme, r.Action, r.Reason)
			}
			w.Flush()
			if aliasesOut == "" {
				aliasesOut = cfg.Routing.VirtualAliases
			}
			if len(aliases) > 0 && !dryRun {
				if aliasesOut == "" {
					fmt.Fprintln(out, "aliases (no routing.virtual_aliases file configured; add these lines to one):")
					for _, a := range aliases {
						fmt.Fprintln(out, "  "+a)
					}
				} else if err := appendLines(aliasesOut, aliases); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "%d accounts: %d created, %d existed, %d would be created, %d skipped; %d aliases\n",
				len(res), counts["created"], counts["exists"], counts["would create"], counts["skipped"], len(aliases))
			if counts["skipped"] > 0 {
				return exitError{code: 1, msg: strconv.Itoa(counts["skipped"]) + " accounts could not be migrated (see REASON)"}
			}
			return nil
		},
	}
	c.Flags().StringVar(&csvFile, "csv", "", "CSV file of accounts (address,password,aliases)")
	c.Flags().StringVar(&lu.URL, "ldap-url", "", "LDAP server (ldap:// or ldaps://)")
	c.Flags().BoolVar(&lu.StartTLS, "ldap-starttls", false, "StartTLS on an ldap:// connection")
	c.Flags().StringVar(&lu.BindDN, "ldap-bind-dn", "", "DN to bind as (one that may read userPassword)")
	c.Flags().StringVar(&ldapPwFile, "ldap-password-file", "", "file holding the bind password (or $PORTCULLIS_LDAP_PASSWORD)")
	c.Flags().StringVar(&lu.Base, "ldap-base", "", "search base")
	c.Flags().StringVar(&lu.Filter, "ldap-filter", "", "search filter (default (objectClass=inetOrgPerson))")
	c.Flags().StringVar(&lu.MailAttr, "ldap-mail-attr", "", "attribute holding the address (default mail)")
	c.Flags().StringVar(&lu.PasswordAttr, "ldap-password-attr", "", "attribute holding the hash (default userPassword)")
	c.Flags().StringVar(&lu.AliasAttr, "ldap-alias-attr", "", "attribute holding aliases (default mailAlternateAddress, - for none)")
	c.Flags().StringVar(&aliasesOut, "aliases-out", "", "virtual(5) file the aliases are appended to (default routing.virtual_aliases)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be created, creating nothing")
	return c
}

// appendLines appends the lines not already in the file.
func appendLines(path string, lines []string) error {
	have := map[string]bool{}
	if b, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			have[strings.Join(strings.Fields(l), " ")] = true
		}
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if !have[l] {
			fmt.Fprintln(fh, l)
			have[l] = true
		}
	}
	return fh.Close()
}

func migrateSieveCmd(g *globalFlags) *cobra.Command {
	var host, security, user, pwFile, master, dir, active, target string
	var insecure bool
	c := &cobra.Command{
		Use:   "sieve (--host HOST:PORT --user USER | --dir DIR)",
		Short: "Copy a user's Sieve scripts (ManageSieve or files), compiled first, the active one kept active",
		Long: `Read a user's Sieve scripts from a ManageSieve server (RFC 5804; password or --master
login) or from a directory of NAME.sieve files (--active: the active script's file or
Dovecot's ~/.dovecot.sieve link), compile each as delivery does, and store those that
compile as --target's scripts (what ManageSieve serves and delivery runs), the active one
active. Scripts that do not compile are listed with the compiler's error and not stored
(exit status 1). Without --target the scripts are only checked. Running it again replaces
the scripts of the same names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			var scripts []migrate.Script
			var err error
			switch {
			case dir != "" && host == "":
				scripts, err = migrate.ScriptsFromDir(dir, active)
			case host != "" && user != "" && dir == "":
				var pw string
				if pw, err = readSecret(pwFile, "PORTCULLIS_MIGRATE_PASSWORD"); err != nil {
					return err
				}
				var tc *tls.Config
				if insecure {
					tc = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by --insecure-skip-verify
				}
				scripts, err = migrate.ScriptsFromManageSieve(ctx, migrate.ImapConfig{Addr: host, Security: security, TLSConfig: tc,
					User: user, Password: pw, Master: master})
			default:
				return errors.New("migrate sieve: give --host and --user, or --dir")
			}
			if err != nil {
				return err
			}
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			var dst migrate.ScriptTarget
			if target != "" {
				sc, err := store.OpenScripts(ctx, cfg.Store, strings.ToLower(target))
				if err != nil {
					return err
				}
				defer sc.Close()
				dst = storetarget.Scripts{S: sc, Lim: cfg.Sieve.ScriptLimits()}
			}
			checker := cfg.Sieve.NewChecker(cfg.Routing.RecipientDelimiter)
			res, err := migrate.MigrateScripts(ctx, scripts, dst, func(b []byte) error {
				_, err := checker.Check(b)
				return err
			})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(w, "SCRIPT\tACTIVE\tRESULT\tERROR")
			bad := 0
			for _, r := range res {
				msg := ""
				if r.Err != nil {
					bad++
					msg = strings.ReplaceAll(r.Err.Error(), "\n", "; ")
				}
				fmt.Fprintf(w, "%s\t%v\t%s\t%s\n", r.Name, r.Active, r.Action, msg)
			}
			w.Flush()
			if bad > 0 {
				return exitError{code: 1, msg: fmt.Sprintf("%d scripts do not compile", bad)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&host, "host", "", "the source ManageSieve server, HOST:PORT (usually port 4190)")
	c.Flags().StringVar(&security, "security", "starttls", "starttls, tls, or none (trusted networks only)")
	c.Flags().BoolVar(&insecure, "insecure-skip-verify", false, "accept any TLS certificate of the source")
	c.Flags().StringVar(&user, "user", "", "the source user")
	c.Flags().StringVar(&pwFile, "password-file", "", "file holding the password (of the user, or of --master)")
	c.Flags().StringVar(&master, "master", "", "log in as this master/admin user on behalf of --user")
	c.Flags().StringVar(&dir, "dir", "", "a directory of NAME.sieve files instead of a server")
	c.Flags().StringVar(&active, "active", "", "with --dir: the active script's file or link (e.g. ~/.dovecot.sieve)")
	c.Flags().StringVar(&target, "target", "", "the portcullis user whose scripts they become (without it: only check)")
	return c
}
