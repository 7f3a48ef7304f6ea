package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/migrate/storetarget"
	"github.com/portcullis-mail/portcullis/store"
)

// dialOld opens a TCP connection to the old back-end. With --master (or
// --proxy-protocol) it first sends a PROXY v2 header naming this node as the client: a
// portcullis back-end takes a master login only on a connection from its move_from (or
// proxy_from) that came with a header (proxylisten.FromProxy), and requires the header
// from every connection of those addresses. The header tells the truth (this node's own address),
// and carries no PP2_TYPE_SSL: the move speaks TLS itself.
func (m *mover) dialOld(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Minute}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || !m.flags.proxyHeader() {
		return conn, err
	}
	conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := proxyproto.HeaderProxyFromAddrs(2, conn.LocalAddr(), conn.RemoteAddr()).WriteTo(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("PROXY header: %w", err)
	}
	conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// proxyHeader says whether the move's connections to the old back-end start with a
// PROXY header.
func (f *moveFlags) proxyHeader() bool { return f.master != "" || f.proxyProtocol }

// sieveConfig is how the move reaches the old back-end's ManageSieve listener
// (STARTTLS, as the listener offers; RFC 5804 has no implicit-TLS port).
func (m *mover) sieveConfig() migrate.ImapConfig {
	c := m.imapConfig()
	c.Addr, c.Security, c.POP3Addr = m.src.ManageSieve, "starttls", ""
	return c
}

// scriptMover copies a user's Sieve scripts from the old back-end's ManageSieve
// listener into this node's store, and removes them there after the flip.
type scriptMover struct {
	m       *mover
	cfg     *config.Config
	scripts *store.Scripts
}

func openScriptMover(ctx context.Context, m *mover, cfg *config.Config) (*scriptMover, error) {
	sc, err := store.OpenScripts(ctx, cfg.Store, m.user)
	if err != nil {
		return nil, err
	}
	return &scriptMover{m: m, cfg: cfg, scripts: sc}, nil
}

func (s *scriptMover) Close() error { return s.scripts.Close() }

// copy reads the user's scripts at the old back-end, stores them here (each compiled
// first with the compiler delivery uses: a script that does not compile here, or is over
// this node's sieve limits, stops the move before anything irreversible), makes the
// same one active (or none), and checks what is stored here against what was read. It
// returns the scripts read: what the removal after the flip may delete. Scripts stored
// here under other names (left from an earlier stay of the user on this node) are kept,
// inactive, and named in the output. With --skip-sieve it does nothing.
func (s *scriptMover) copy(ctx context.Context) ([]migrate.Script, error) {
	if s.m.flags.skipSieve {
		return nil, nil
	}
	old, err := migrate.ScriptsFromManageSieve(ctx, s.m.sieveConfig())
	if err != nil {
		return nil, fmt.Errorf("reading the Sieve scripts on %s (its ManageSieve listener, directory.hosts' managesieve): %w", s.m.from, err)
	}
	checker := s.cfg.Sieve.NewChecker(s.cfg.Routing.RecipientDelimiter)
	dst := storetarget.Scripts{S: s.scripts, Lim: s.cfg.Sieve.ScriptLimits()}
	res, err := migrate.MigrateScripts(ctx, old, dst, func(b []byte) error {
		_, err := checker.Check(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, r := range res {
		if r.Err != nil {
			bad = append(bad, fmt.Sprintf("%q %s: %s", r.Name, r.Action, strings.ReplaceAll(r.Err.Error(), "\n", "; ")))
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("some Sieve scripts of %s on %s cannot be stored here (fix them there and run the move again): %s",
			s.m.user, s.m.from, strings.Join(bad, "; "))
	}
	active := ""
	for _, sc := range old {
		if sc.Active {
			active = sc.Name
		}
	}
	if active == "" { // as at the old back-end: none active
		if err := s.scripts.SetActive(ctx, ""); err != nil {
			return nil, err
		}
	}
	return old, s.verify(ctx, old)
}

// verify checks that every script read at the old back-end is stored here with the
// same bytes, and that the same one is active (or none).
func (s *scriptMover) verify(ctx context.Context, old []migrate.Script) error {
	here, err := s.scripts.List(ctx)
	if err != nil {
		return err
	}
	activeHere, activeOld := "", ""
	names := map[string]bool{}
	for _, i := range here {
		names[i.Name] = true
		if i.Active {
			activeHere = i.Name
		}
	}
	for _, sc := range old {
		if sc.Active {
			activeOld = sc.Name
		}
		text, err := s.scripts.Get(ctx, sc.Name)
		if err != nil {
			return fmt.Errorf("verification: Sieve script %q: %w", sc.Name, err)
		}
		if !bytes.Equal(text, sc.Text) {
			return fmt.Errorf("verification: Sieve script %q differs here from %s", sc.Name, s.m.from)
		}
		delete(names, sc.Name)
	}
	if activeHere != activeOld {
		return fmt.Errorf("verification: the active Sieve script is %q here, %q on %s", activeHere, activeOld, s.m.from)
	}
	if len(names) > 0 {
		var extra []string
		for n := range names {
			extra = append(extra, n)
		}
		slices.Sort(extra)
		fmt.Fprintf(s.m.out, "Sieve scripts already here and not on %s, kept inactive: %s\n", s.m.from, strings.Join(extra, ", "))
	}
	return nil
}

// removeOld deletes at the old back-end the scripts of copied whose text there is still
// the one copied, deactivating first when the active one is among them (RFC 5804
// §2.10 refuses to delete the active script). A script changed or added there since
// the copy is left, and named in the error. It returns how many it deleted.
//
// Its ManageSieve session logs in after the flip, later than the cut the old back-end
// closes sessions at (the move's start plus the cache TTL), so it is not closed.
func (s *scriptMover) removeOld(ctx context.Context, copied []migrate.Script) (int, error) {
	if s.m.flags.skipSieve {
		return 0, nil
	}
	c, err := migrate.DialManageSieve(ctx, s.m.sieveConfig())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	now, err := c.Scripts()
	if err != nil {
		return 0, err
	}
	want := map[string][]byte{}
	for _, sc := range copied {
		want[sc.Name] = sc.Text
	}
	var del []string
	var kept []string
	deactivate := false
	for _, sc := range now {
		text, ok := want[sc.Name]
		switch {
		case !ok:
			kept = append(kept, fmt.Sprintf("%q: not copied (added since)", sc.Name))
		case !bytes.Equal(text, sc.Text):
			kept = append(kept, fmt.Sprintf("%q: changed since the copy", sc.Name))
		default:
			del = append(del, sc.Name)
			deactivate = deactivate || sc.Active
		}
	}
	if deactivate {
		if err := c.SetActive(""); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, name := range del {
		err := c.Delete(name)
		switch {
		case errors.Is(err, migrate.ErrNoSieveScript): // deleted meanwhile
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	if len(kept) > 0 {
		return n, fmt.Errorf("left on the old back-end (not verified as copied): Sieve scripts %s", strings.Join(kept, "; "))
	}
	return n, nil
}
