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
// imap, imaps, pop3 or pop3s; managesieve follows imap) when its section asks for it: a
// back-end behind portcullis's proxy then sees the real client. The section's
// move_from, the back-ends that run portcullis user move, send a header too, but only
// its client address is logged: it is not believed, nor its TLS flag.
func proxyListener(cfg *config.Config, name string, ln net.Listener, logger *slog.Logger) (net.Listener, error) {
	on, from, movers := cfg.IMAP.ProxyProtocol, cfg.IMAP.ProxyFrom, cfg.IMAP.MoveFrom
	if strings.HasPrefix(name, "pop3") {
		on, from, movers = cfg.POP3.ProxyProtocol, cfg.POP3.ProxyFrom, cfg.POP3.MoveFrom
	}
	if !on {
		return ln, nil
	}
	pl, err := proxylisten.WrapWith(ln, from, movers)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: proxy_from/move_from: %w", name, err)
	}
	pl.Refused = func(peer net.Addr, err error) {
		logger.Warn("connection without a valid PROXY header", "listener", name, "peer", peer.String(), "err", err.Error())
	}
	pl.Mover = func(peer, claimed net.Addr) {
		logger.Info("connection from a back-end in move_from (its PROXY header's client is not believed)",
			"listener", name, "peer", peer.String(), "claimed", fmt.Sprint(claimed))
	}
	return pl, nil
}
