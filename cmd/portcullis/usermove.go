package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/spf13/cobra"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/storetarget"
	"github.com/portcullis-mail/portcullis/store"
)

// moveFlags are the options of portcullis user move.
type moveFlags struct {
	to, master, pwFile               string
	insecure, keepOld, proxyProtocol bool
	skipSieve                        bool
	settle                           time.Duration
}

func userMoveCmd(g *globalFlags) *cobra.Command {
	f := &moveFlags{}
	c := &cobra.Command{
		Use:   "move ADDRESS --to HOST",
		Short: "Move a user's mailbox to another back-end with nothing lost (run it on the new back-end)",
		Long: `Move a user's mailbox from the back-end that holds it to HOST, with the shared directory
(directory.postgres). Run it on HOST itself (its directory.this_host): the mailbox is
written into this node's store while the server runs.

 1. A first copy while the user is live (the migration tool's IMAP copy: every folder,
    flags and keywords, internal dates, UIDVALIDITY and UIDs, and the INBOX's POP3
    UIDLs read from the old back-end's POP3 listener).
 2. The user is marked moving: front-ends keep new mail in their queues (450 4.2.1,
    retried, never bounced), the proxy answers [UNAVAILABLE], and the old back-end
    closes the user's IMAP, POP3 and ManageSieve sessions.
 3. After --settle (default twice directory.cache_ttl plus a second, the time every node
    takes to see the change), the copy catches up: new messages, flags changed since, and
    the messages expunged there since are removed here (by UID: the copy keeps UIDs).
 4. Verification: a dry run finds nothing left to copy or remove, and every folder holds as many
    messages here as there.
 5. The mail host becomes HOST and the state is cleared: front-ends deliver what they
    held here at their next retry, the proxy sends the user's sessions here.
 6. The old copy is removed (the messages copied expunged, the folders left empty
    deleted but INBOX, the Sieve scripts copied deleted), unless --keep-old.

The user's Sieve scripts are copied from the old back-end's ManageSieve listener
(directory.hosts' managesieve address, STARTTLS), the active one kept active, compiled
and checked against what was read: once before the user is marked moving (a script that
does not compile here stops the move there, before any mail is held), and again just
before the flip; after it they are removed there (unless --keep-old). --skip-sieve, for
an old back-end without a ManageSieve listener, leaves them in its store. The vacation and
duplicate memory of the Sieve actions is not moved: a correspondent may get one vacation
reply again.

The old back-end is read over IMAP (directory.hosts' imap address, implicit TLS), POP3
and ManageSieve as the user, with the password from --password-file or
$PORTCULLIS_MIGRATE_PASSWORD, or as --master on the user's behalf (SASL PLAIN
authorization identity; the proxy's proxy.master_user and its secret). With --master
every connection starts with a PROXY v2 header naming this node: the old back-end takes
the master login only from an address in its imap and pop3 move_from (or proxy_from), so
add this node's address to its move_from, not to proxy_from, which would also believe
the TLS claims of any process on this node (--proxy-protocol sends the header with a
password login too).
The old back-end closes the user's IMAP, POP3 and ManageSieve sessions opened before the
move (mode: backend). A move that stops midway is safe to run again: the copy is
incremental and never duplicates, and a user left moving keeps their mail held until a
move completes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.to == "" {
				return errors.New("user move: --to HOST is required")
			}
			pw, err := readSecret(f.pwFile, "PORTCULLIS_MIGRATE_PASSWORD")
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			cfg, err := loadAsDataOwner(g)
			if err != nil {
				return err
			}
			return moveUser(ctx, cfg, f, args[0], pw, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&f.to, "to", "", "the back-end that will hold the mailbox (this node)")
	c.Flags().StringVar(&f.master, "master", "", "log in to the old back-end as this master user on the user's behalf")
	c.Flags().StringVar(&f.pwFile, "password-file", "", "file holding the password (of the user, or of --master)")
	c.Flags().BoolVar(&f.insecure, "insecure-skip-verify", false, "accept any certificate of the old back-end")
	c.Flags().BoolVar(&f.keepOld, "keep-old", false, "leave the old copy (mail and Sieve scripts) on the old back-end")
	c.Flags().BoolVar(&f.skipSieve, "skip-sieve", false, "do not copy the Sieve scripts (an old back-end without a ManageSieve listener): they stay in its store")
	c.Flags().BoolVar(&f.proxyProtocol, "proxy-protocol", false, "send a PROXY v2 header naming this node on every connection to the old back-end (always with --master)")
	c.Flags().DurationVar(&f.settle, "settle", 0, "wait between marking the user moving and the final copy (default 2×directory.cache_ttl+1s)")
	return c
}

// moveFirstCopied, when set (by a test), is called after the first copy, before the
// user is marked moving: the window in which the user still changes the old copy.
var moveFirstCopied func(user string)

// moveUser is portcullis user move; see its help.
func moveUser(ctx context.Context, cfg *config.Config, f *moveFlags, addr, password string, out io.Writer) error {
	if cfg.Directory.Postgres == "" {
		return errors.New("user move needs the shared directory (directory.postgres)")
	}
	if cfg.Directory.ThisHost != f.to {
		return fmt.Errorf("user move: run it on the new back-end %s (this node's directory.this_host is %q)", f.to, cfg.Directory.ThisHost)
	}
	dir, err := directory.OpenPostgres(ctx, cfg.Directory.Postgres)
	if err != nil {
		return err
	}
	defer dir.Close()
	u, err := dir.Lookup(ctx, addr)
	if err != nil {
		return err
	}
	from := u.MailHost
	if from == directory.HostHere {
		from = cfg.Directory.DefaultHost
	}
	if from == f.to {
		return fmt.Errorf("user move: %s already lives on %s", u.Address, f.to)
	}
	src, err := cfg.Directory.HostOf(from)
	if err != nil {
		return err
	}
	st, err := store.New(cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	userDir, err := st.UserDir(u.Address)
	if err != nil {
		return err
	}
	state, err := migrate.OpenState(filepath.Join(userDir, "migrate-state.sqlite"))
	if err != nil {
		return err
	}
	defer state.Close()
	tg, err := storetarget.Open(ctx, st, u.Address)
	if err != nil {
		return err
	}
	defer tg.Close()
	m := &mover{user: u.Address, from: from, src: src, flags: f, password: password, target: tg, state: state,
		out: out, log: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if f.insecure {
		m.tls = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by --insecure-skip-verify
	}
	sm, err := openScriptMover(ctx, m, cfg) // usermove_sieve.go
	if err != nil {
		return err
	}
	defer sm.Close()

	// 1. While the user is live; a failure here (mail arriving between the IMAP and the
	// POP3 listing, say) only leaves more for the final copy.
	if u.State != directory.StateMoving {
		if _, err := m.copy(ctx, false); err != nil {
			fmt.Fprintf(out, "first copy incomplete (%v); the final copy does the rest\n", err)
		}
		// The scripts are copied now too: one that cannot be stored here stops the
		// move before the user's mail is held.
		if _, err := sm.copy(ctx); err != nil {
			return fmt.Errorf("user move: %s (not moving yet; nothing changed for the user): %w", u.Address, err)
		}
		if moveFirstCopied != nil {
			moveFirstCopied(u.Address)
		}
		if err := dir.SetState(ctx, u.Address, directory.StateMoving); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s marked moving: new mail is held at the front-ends\n", u.Address)
	}
	// 2–3. Every node sees the state within its cache TTL; the old back-end closes the
	// sessions opened before, and this copy's session, opened after, is left.
	settle := f.settle
	if settle <= 0 {
		ttl := cfg.Directory.CacheTTL
		if ttl == 0 {
			ttl = directory.DefaultCacheTTL
		}
		settle = 2*max(ttl, 0) + tenancyInterval
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return fmt.Errorf("user move: stopped while %s is moving (run it again to finish): %w", u.Address, ctx.Err())
	}
	// The session that removes the old copy is opened now, before the flip, so that the
	// old back-end, which closes sessions opened before the move was visible, keeps it.
	// What it sees now is what the copy and the verification below cover: only that is
	// removed, and whatever reaches the old copy later is left for the admin.
	var rm *imapclient.Client
	var old oldCopy
	if !f.keepOld {
		if rm, err = m.dial(ctx); err != nil {
			return err
		}
		defer rm.Close()
		if old, err = snapshotMailbox(rm); err != nil {
			return fmt.Errorf("user move: listing the old copy of %s (still moving; run it again): %w", u.Address, err)
		}
	}
	res, err := m.copy(ctx, false)
	if err != nil {
		return fmt.Errorf("user move: final copy of %s (still moving; run it again): %w", u.Address, err)
	}
	// 4. Verify before anything irreversible.
	if err := m.verify(ctx); err != nil {
		return fmt.Errorf("user move: %s (still moving; run it again): %w", u.Address, err)
	}
	// The Sieve scripts, read now: nobody changes them at the old back-end any more
	// (the user's sessions there are closed, the proxy refuses new ones).
	scripts, err := sm.copy(ctx)
	if err != nil {
		return fmt.Errorf("user move: %s (still moving; run it again): %w", u.Address, err)
	}
	// 5. The flip.
	if err := dir.SetMailHost(ctx, u.Address, f.to); err != nil {
		return err
	}
	t := res.Totals()
	fmt.Fprintf(out, "%s now lives on %s (%d messages in %d folders, %d Sieve scripts); held mail is delivered at the front-ends' next retry\n",
		u.Address, f.to, t.SourceMessages, len(res.Folders), len(scripts))
	// 6. The old copy.
	if f.keepOld {
		return nil
	}
	var errs []error
	n, err := removeMailbox(rm, old)
	if err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(out, "removed the old copy on %s (%d messages)\n", from, n)
	}
	if n, err := sm.removeOld(ctx, scripts); err != nil {
		errs = append(errs, err)
	} else if !f.skipSieve {
		fmt.Fprintf(out, "removed the Sieve scripts on %s (%d)\n", from, n)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("user move: %s moved, but removing the old copy on %s failed (remove it by hand): %w", u.Address, from, err)
	}
	return nil
}

// mover copies one user from the old back-end into this node's store.
type mover struct {
	user, from string
	src        directory.Host
	flags      *moveFlags
	password   string
	tls        *tls.Config
	target     *storetarget.Target
	state      *migrate.State
	out        io.Writer
	log        *slog.Logger
}

func (m *mover) imapConfig() migrate.ImapConfig {
	return migrate.ImapConfig{Addr: m.src.IMAP, Security: "tls", TLSConfig: m.tls, User: m.user, Password: m.password,
		Master: m.flags.master, POP3Addr: "tls:" + m.src.POP3, Dial: m.dialOld}
}

// copy runs the migration once (dry: only report what is left to do).
func (m *mover) copy(ctx context.Context, dry bool) (migrate.Result, error) {
	src, err := migrate.DialImap(ctx, m.imapConfig())
	if err != nil {
		return migrate.Result{}, err
	}
	defer src.Close()
	res, err := migrate.Run(ctx, src, m.target, m.state, migrate.Options{
		Source: "move://" + m.from + "/" + m.user, TargetUser: m.user,
		// ExpungeGone: a message expunged at the old back-end after the first copy
		// (before the user was marked moving) would otherwise come back here. The copy
		// keeps UIDs, so the UIDs gone there are the copies to remove here.
		SyncFlags: true, KeepUIDs: true, ExpungeGone: true, DryRun: dry, Logger: m.log,
	})
	if err == nil {
		err = res.Err
	}
	if err == nil {
		err = res.Totals().Err
	}
	if err == nil && res.Totals().Failed > 0 {
		err = fmt.Errorf("%d messages failed", res.Totals().Failed)
	}
	return res, err
}

// verify checks that nothing is left to copy or expunge and that each folder has as many
// messages here as at the source.
func (m *mover) verify(ctx context.Context) error {
	res, err := m.copy(ctx, true)
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	for _, f := range res.Folders {
		if f.Copied > 0 || f.FlagsSynced > 0 || f.Removed > 0 {
			return fmt.Errorf("verification: %s still has %d messages to copy, %d flag changes and %d expunges", f.Source, f.Copied, f.FlagsSynced, f.Removed)
		}
		msgs, err := m.target.Messages(ctx, f.Target)
		if err != nil {
			return fmt.Errorf("verification: %s: %w", f.Target, err)
		}
		if len(msgs) != f.SourceMessages {
			return fmt.Errorf("verification: %s holds %d messages here, %d at the source", f.Target, len(msgs), f.SourceMessages)
		}
	}
	return nil
}

// dial logs in to the old back-end as migrate does.
func (m *mover) dial(ctx context.Context) (*imapclient.Client, error) {
	tc := m.tls
	if tc == nil {
		host, _, _ := strings.Cut(m.src.IMAP, ":")
		tc = &tls.Config{ServerName: host}
	}
	raw, err := m.dialOld(ctx, m.src.IMAP) // usermove_sieve.go: with a PROXY header for --master
	if err != nil {
		return nil, fmt.Errorf("imap %s: %w", m.src.IMAP, err)
	}
	c := imapclient.New(tls.Client(raw, tc), nil)
	if m.flags.master != "" {
		err = c.Authenticate(sasl.NewPlainClient(m.user, m.flags.master, m.password))
	} else {
		err = c.Login(m.user, m.password).Wait()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("imap %s: login as %s: %w", m.src.IMAP, m.user, err)
	}
	return c, nil
}

// oldCopy is the old back-end's mailbox as the move saw it before its final copy: each
// selectable folder's UIDVALIDITY and UIDs, and every folder's name.
type oldCopy struct {
	folders map[string]oldFolder
	list    []*imap.ListData
}

type oldFolder struct {
	validity uint32
	uids     imap.UIDSet
}

// snapshotMailbox lists what c's user holds: taken before the final copy, every message
// in it has been copied once the verification passes.
func snapshotMailbox(c *imapclient.Client) (oldCopy, error) {
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return oldCopy{}, err
	}
	snap := oldCopy{folders: map[string]oldFolder{}, list: list}
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return oldCopy{}, fmt.Errorf("select %s: %w", l.Mailbox, err)
		}
		f := oldFolder{validity: sel.UIDValidity}
		if sel.NumMessages > 0 {
			data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
			if err != nil {
				return oldCopy{}, fmt.Errorf("search %s: %w", l.Mailbox, err)
			}
			f.uids = imap.UIDSetNum(data.AllUIDs()...)
		}
		snap.folders[l.Mailbox] = f
	}
	if len(snap.folders) > 0 {
		if err := c.Unselect().Wait(); err != nil {
			return oldCopy{}, err
		}
	}
	return snap, nil
}

// removeMailbox removes from c's user the messages of snap (UID STORE and UID EXPUNGE,
// RFC 4315 §2.1: only those), then the folders of snap left empty, the deepest first,
// INBOX and the parents of a folder kept excepted. Messages that reached the old copy
// after the snapshot were never verified as copied: they stay, and the error names
// their folders. It returns the messages removed.
func removeMailbox(c *imapclient.Client, snap oldCopy) (int, error) {
	n := 0
	kept := map[string]string{} // folder → why
	for name, f := range snap.folders {
		sel, err := c.Select(name, nil).Wait()
		if err != nil {
			return n, fmt.Errorf("select %s: %w", name, err)
		}
		if sel.UIDValidity != f.validity {
			kept[name] = "UIDVALIDITY changed"
			continue
		}
		// In pieces: a set with many gaps would pass the server's line limit (64 KiB
		// in imapd).
		for part := range slices.Chunk(f.uids, 2000) {
			uids := imap.UIDSet(part)
			if err := c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return n, fmt.Errorf("store %s: %w", name, err)
			}
			gone, err := c.UIDExpunge(uids).Collect()
			if err != nil {
				return n, fmt.Errorf("expunge %s: %w", name, err)
			}
			n += len(gone)
		}
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return n, fmt.Errorf("status %s: %w", name, err)
		}
		if st.NumMessages != nil && *st.NumMessages > 0 {
			kept[name] = fmt.Sprintf("%d messages arrived after the copy", *st.NumMessages)
		}
	}
	if len(snap.folders) > 0 {
		if err := c.Unselect().Wait(); err != nil {
			return n, err
		}
	}
	// Children before their parents: a longer name first.
	list := slices.Clone(snap.list)
	slices.SortFunc(list, func(a, b *imap.ListData) int { return len(b.Mailbox) - len(a.Mailbox) })
	under := func(parent string, delim rune) bool {
		for k := range kept {
			if delim != 0 && strings.HasPrefix(k, parent+string(delim)) {
				return true
			}
		}
		return false
	}
	for _, l := range list {
		if strings.EqualFold(l.Mailbox, "INBOX") || kept[l.Mailbox] != "" {
			continue
		}
		if under(l.Mailbox, l.Delim) {
			kept[l.Mailbox] = "holds a folder kept"
			continue
		}
		if err := c.Delete(l.Mailbox).Wait(); err != nil {
			return n, fmt.Errorf("delete %s: %w", l.Mailbox, err)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return n, err
	}
	if len(kept) > 0 {
		var why []string
		for k, v := range kept {
			why = append(why, k+": "+v)
		}
		slices.Sort(why)
		return n, fmt.Errorf("left on the old copy (not verified as copied): %s", strings.Join(why, "; "))
	}
	return n, nil
}
