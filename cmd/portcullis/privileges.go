package main

// No root at run time (issue 15, item 6). Started as root with user: in the config,
// portcullis serve binds its TCP listeners and reads the TLS certificate and key as root,
// gives the data directory to the user, then switches to the user and group before it
// opens anything else or serves any client, as Postfix's master and Dovecot do. Without
// user: it refuses to run as root when a listener is reachable from the network, unless
// allow_root says so.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/internal/private"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// identity is the user and groups to run as.
type identity struct {
	name   string
	uid    int
	gid    int
	groups []int // supplementary groups, as initgroups(3) sets them
}

// lookupIdentity resolves the user and group names (or numeric ids) of the config.
func lookupIdentity(userName, groupName string) (*identity, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		var unknown user.UnknownUserError
		if _, nerr := strconv.Atoi(userName); nerr == nil && errors.As(err, &unknown) {
			u, err = user.LookupId(userName)
		}
		if err != nil {
			return nil, fmt.Errorf("user: %w", err)
		}
	}
	id := &identity{name: u.Username}
	if id.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", userName, u.Uid, err)
	}
	if id.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", userName, u.Gid, err)
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, nerr := strconv.Atoi(groupName); nerr == nil {
				g, err = user.LookupGroupId(groupName)
			}
			if err != nil {
				return nil, fmt.Errorf("group: %w", err)
			}
		}
		if id.gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("group %s: gid %q: %w", groupName, g.Gid, err)
		}
	}
	if id.uid == 0 {
		return nil, fmt.Errorf("user: %s is root; name an unprivileged user", userName)
	}
	gids, err := u.GroupIds()
	if err != nil {
		gids = nil // no group database entry beyond the primary group: none
	}
	id.groups = []int{id.gid}
	for _, s := range gids {
		if g, err := strconv.Atoi(s); err == nil && g != id.gid && g != 0 {
			id.groups = append(id.groups, g)
		}
	}
	return id, nil
}

// privileges is what serve opened as root for later use, and the identity it runs as.
type privileges struct {
	mu       sync.Mutex
	sockets  map[string][]net.Listener // TCP sockets bound before the switch, by address
	tlsCfg   *tls.Config               // the certificate read before the switch
	runAs    *identity                 // nil: no switch
	stayRoot bool                      // running as root (loopback only, or allow_root)
}

// listen returns the socket bound for address before the switch, or opens one.
func (p *privileges) listen(network, address string) (net.Listener, error) {
	p.mu.Lock()
	if ls := p.sockets[network+" "+address]; len(ls) > 0 {
		p.sockets[network+" "+address] = ls[1:]
		p.mu.Unlock()
		return ls[0], nil
	}
	p.mu.Unlock()
	return net.Listen(network, address)
}

// tlsConfig returns the certificate read before the switch, or reads it.
func (p *privileges) tlsConfig(cfg smtpd.Config) (*tls.Config, error) {
	if p.tlsCfg != nil {
		return p.tlsCfg, nil
	}
	return smtpd.LoadTLSConfig(cfg)
}

// close closes the sockets nobody took.
func (p *privileges) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ls := range p.sockets {
		for _, l := range ls {
			l.Close()
		}
	}
	p.sockets = nil
}

// tcpAddrs are the TCP addresses serve listens on: SMTP listeners (unix sockets
// excepted), IMAP, POP3, ManageSieve and HTTP.
func tcpAddrs(cfg *config.Config) []string {
	var out []string
	for _, l := range cfg.SMTP.Listeners {
		if !strings.HasPrefix(l.Addr, "unix:") {
			out = append(out, l.Addr)
		}
	}
	for _, a := range []string{cfg.IMAP.Addr, cfg.IMAP.TLSAddr, cfg.POP3.Addr, cfg.POP3.TLSAddr, cfg.ManageSieve.Addr, cfg.HTTP.Addr,
		cfg.Proxy.IMAPAddr, cfg.Proxy.IMAPSAddr, cfg.Proxy.POP3Addr, cfg.Proxy.POP3SAddr} {
		if a != "" {
			out = append(out, a)
		}
	}
	return append(out, doorAddrs(cfg)...)
}

// exposed returns the listening addresses that are not loopback-only: an empty host
// (every interface), a non-loopback address, a host name other than localhost.
func exposed(cfg *config.Config) []string {
	var out []string
	for _, a := range tcpAddrs(cfg) {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			out = append(out, a)
			continue
		}
		if strings.EqualFold(host, "localhost") {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
			continue
		}
		out = append(out, a)
	}
	return out
}

// dropPrivileges applies the root policy before serve opens anything but the data
// directory. With cfg.User and root: it binds the TCP listeners, reads the TLS
// certificate, makes the data directory the user's and switches to the user. Without
// cfg.User as root: it refuses when a listener is exposed and allow_root is not set, and
// warns otherwise. In every case the data directory's files lose group and world access.
func dropPrivileges(cfg *config.Config, log *slog.Logger) (*privileges, error) {
	p := &privileges{sockets: map[string][]net.Listener{}}
	euid := os.Geteuid()
	if cfg.User == "" {
		if euid == 0 {
			if ex := exposed(cfg); len(ex) > 0 && !cfg.AllowRoot {
				return nil, fmt.Errorf("refusing to run as root with listeners reachable from the network (%s): "+
					"set user: (an unprivileged user, e.g. portcullis) in the config to drop root after binding, "+
					"run it as that user under systemd (docs/operations.md), or set allow_root: true", strings.Join(ex, ", "))
			}
			p.stayRoot = true
			if cfg.AllowRoot {
				log.Warn("RUNNING AS ROOT (allow_root: true): a flaw in any protocol handler would give the attacker the machine; set user: to drop privileges after binding")
			} else {
				log.Warn("RUNNING AS ROOT: acceptable for a trial on loopback only; set user: (e.g. portcullis) before listening on the network, where running as root is refused")
			}
		}
		return p, fixDataDir(cfg, nil)
	}
	id, err := lookupIdentity(cfg.User, cfg.Group)
	if err != nil {
		return nil, err
	}
	if euid != 0 {
		if euid != id.uid {
			return nil, fmt.Errorf("user: %s: switching to another user needs root (running as uid %d)", cfg.User, euid)
		}
		return p, fixDataDir(cfg, nil)
	}
	fail := func(err error) (*privileges, error) {
		p.close()
		return nil, err
	}
	// Sockets and certificate first, as root: ports below 1024, a key readable by root.
	for _, a := range tcpAddrs(cfg) {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", a, err))
		}
		p.sockets["tcp "+a] = append(p.sockets["tcp "+a], ln)
	}
	if p.tlsCfg, err = smtpd.LoadTLSConfig(cfg.SMTP); err != nil {
		return fail(err)
	}
	if err := fixDataDir(cfg, id); err != nil {
		return fail(err)
	}
	if err := switchTo(id); err != nil {
		return fail(err)
	}
	p.runAs = id
	log.Info("dropped root privileges", "user", id.name, "uid", id.uid, "gid", id.gid, "groups", id.groups)
	return p, nil
}

// switchTo makes every thread of the process run as id (Go applies setuid and friends
// to all threads on Linux since 1.16) and checks that root cannot be regained.
func switchTo(id *identity) error {
	if err := syscall.Setgroups(id.groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", id.groups, err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("setgid %d: %w", id.gid, err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("setuid %d: %w", id.uid, err)
	}
	if os.Getuid() != id.uid || os.Geteuid() != id.uid || os.Getgid() != id.gid || os.Getegid() != id.gid {
		return fmt.Errorf("switching to %s: still uid %d/%d gid %d/%d", id.name, os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	if err := syscall.Setuid(0); err == nil {
		return fmt.Errorf("switching to %s: root could be regained", id.name)
	}
	// A change of credentials makes the process undumpable, which gives /proc/self to
	// root: the metrics' process collector could no longer read its own descriptors.
	// The process holds no privilege any more, so the user it runs as may see it.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", errno)
	}
	return nil
}

const prSetDumpable = 4 // PR_SET_DUMPABLE, <linux/prctl.h>

// loadAsDataOwner loads the config of an admin command and becomes its user (asDataOwner).
func loadAsDataOwner(g *globalFlags) (*config.Config, error) {
	cfg, err := config.Load(g.config, g.data)
	if err != nil {
		return nil, err
	}
	return cfg, asDataOwner(cfg)
}

// asDataOwner runs an admin command (user, queue, bayes, dkim keygen) started as root
// as the server's user, so that what it creates in the data directory stays the
// server's: the configured user, or else the owner of the data directory when that is
// not root (a server run by systemd as User=portcullis). Not root, it does nothing.
func asDataOwner(cfg *config.Config) error {
	if os.Geteuid() != 0 {
		return nil
	}
	var id *identity
	switch fi, err := os.Stat(cfg.DataDir); {
	case cfg.User != "":
		if id, err = lookupIdentity(cfg.User, cfg.Group); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if err := fixDataDir(cfg, id); err != nil {
			return err
		}
	case err == nil && fi.Sys().(*syscall.Stat_t).Uid != 0:
		st := fi.Sys().(*syscall.Stat_t)
		id = &identity{name: "uid " + strconv.Itoa(int(st.Uid)), uid: int(st.Uid), gid: int(st.Gid), groups: []int{int(st.Gid)}}
		if u, err := user.LookupId(strconv.Itoa(id.uid)); err == nil {
			if full, err := lookupIdentity(u.Username, ""); err == nil && full.gid == id.gid {
				id = full
			}
		}
	default:
		return nil // a data directory of root's, or none yet: stay root
	}
	return switchTo(id)
}

// fixDataDir makes the data directory private: no file or directory in it keeps group
// or world permissions, and with id every one belongs to id's user and group. The
// mailboxes and the queue are entered only when their top directory needed fixing (a
// data directory used before by root or by an older version), since they may hold
// millions of files and are written only by the server.
func fixDataDir(cfg *config.Config, id *identity) error {
	roots := []string{cfg.DataDir}
	if rel, err := filepath.Rel(cfg.DataDir, cfg.Store.Dir); err != nil || strings.HasPrefix(rel, "..") {
		roots = append(roots, cfg.Store.Dir) // a store outside the data directory
	}
	big := map[string]bool{filepath.Clean(cfg.Store.Dir): true, filepath.Join(cfg.DataDir, "queue"): true}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type()&(fs.ModeSymlink|fs.ModeSocket|fs.ModeNamedPipe|fs.ModeDevice) != 0 {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			st, _ := fi.Sys().(*syscall.Stat_t)
			if st == nil || id == nil && int(st.Uid) != os.Geteuid() && os.Geteuid() != 0 {
				return nil // someone else's file: not ours to change
			}
			fixed := false
			if fi.Mode().Perm()&0o077 != 0 {
				if err := private.Tighten(path); err != nil {
					return err
				}
				fixed = true
			}
			if id != nil && (int(st.Uid) != id.uid || int(st.Gid) != id.gid) {
				if err := os.Lchown(path, id.uid, id.gid); err != nil {
					return fmt.Errorf("data dir: %w", err)
				}
				fixed = true
			}
			if d.IsDir() && big[path] && !fixed {
				return filepath.SkipDir
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("data dir %s: %w", root, err)
		}
	}
	return nil
}
