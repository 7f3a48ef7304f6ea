package main

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/internal/proxylisten"
)

// proxyListener puts the PROXY protocol in front of an IMAP or POP3 listener (name
// imap, imaps, pop3 or pop3s) when its section asks for it: a back-end behind
// portcullis's proxy then sees the real client.
func proxyListener(cfg *config.Config, name string, ln net.Listener, logger *slog.Logger) (net.Listener, error) {
	on, from := cfg.IMAP.ProxyProtocol, cfg.IMAP.ProxyFrom
	if strings.HasPrefix(name, "pop3") {
		on, from = cfg.POP3.ProxyProtocol, cfg.POP3.ProxyFrom
	}
	if !on {
		return ln, nil
	}
	pl, err := proxylisten.Wrap(ln, from)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: proxy_from: %w", name, err)
	}
	pl.Refused = func(peer net.Addr, err error) {
		logger.Warn("connection without a valid PROXY header", "listener", name, "peer", peer.String(), "err", err.Error())
	}
	return pl, nil
}
