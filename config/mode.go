package config

import (
	"fmt"

	"github.com/portcullis-mail/portcullis/smtpd"
)

// The values of Config.Mode.
const (
	ModeStandalone = "standalone"
	ModeFrontend   = "frontend"
	ModeBackend    = "backend"
	ModeProxy      = "proxy"
)

// checkMode validates mode and the keys each mode needs: a front-end and a back-end work
// from the shared directory (a local one has no mail hosts), a front-end has no store for
// an LMTP listener to deliver into. The listeners of the store (imap, pop3,
// managesieve) are cleared in a front-end and a proxy, and the SMTP listeners in a proxy.
func (c *Config) checkMode() error {
	switch c.Mode {
	case "":
		c.Mode = ModeStandalone
	case ModeStandalone, ModeFrontend, ModeBackend, ModeProxy:
	default:
		return fmt.Errorf("mode %q: want standalone, frontend, backend or proxy", c.Mode)
	}
	// One name of this node among the mail hosts: proxy_maybe's and the back-end's.
	switch {
	case c.Proxy.LocalHost == "":
		c.Proxy.LocalHost = c.Directory.ThisHost
	case c.Directory.ThisHost == "":
		c.Directory.ThisHost = c.Proxy.LocalHost
	case c.Proxy.LocalHost != c.Directory.ThisHost:
		return fmt.Errorf("proxy.local_host %q and directory.this_host %q name this node differently; set one", c.Proxy.LocalHost, c.Directory.ThisHost)
	}
	shared := c.Directory.Postgres != "" || c.Directory.LDAP != nil
	// What a mode does not serve has no address: nothing is bound for it (as root,
	// every address is bound before privileges are dropped).
	noMailboxes := func() {
		c.IMAP.Addr, c.IMAP.TLSAddr, c.POP3.Addr, c.POP3.TLSAddr, c.ManageSieve.Addr = "", "", "", "", ""
	}
	switch c.Mode {
	case ModeProxy:
		noMailboxes()
		c.SMTP.Listeners = nil
	case ModeFrontend:
		noMailboxes()
		if !shared {
			return fmt.Errorf("mode frontend: set directory.postgres or directory.ldap (the directory that says which back-end holds each user)")
		}
		for _, l := range c.SMTP.Listeners {
			if l.Mode == smtpd.ModeLMTP {
				return fmt.Errorf("mode frontend: smtp.listeners: %s is an LMTP listener, but a front-end has no store to deliver into (list the front-end's listeners without it)", l.Name)
			}
		}
	case ModeBackend:
		if !shared || c.Directory.ThisHost == "" {
			return fmt.Errorf("mode backend: set directory.this_host (this back-end's mail host name) and directory.postgres or directory.ldap")
		}
	}
	if (c.Mode == ModeFrontend || c.Mode == ModeProxy) && c.Proxy.ProxyMaybe {
		return fmt.Errorf("mode %s: proxy.proxy_maybe serves users from this node's store, and a %s has none", c.Mode, c.Mode)
	}
	if _, ok := c.Directory.Hosts[""]; ok {
		return fmt.Errorf("directory.hosts: a host without a name")
	}
	return nil
}
