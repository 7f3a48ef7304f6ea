package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/smtpd"
)

// TestExposed: the embedded defaults listen on loopback only (make run as root works);
// an empty host, a wildcard, another address or a host name is reachable from the network.
func TestExposed(t *testing.T) {
	cfg := config.Default("./data")
	require.Empty(t, exposed(cfg), "the embedded defaults are loopback only")
	cfg.SMTP.Listeners = append(cfg.SMTP.Listeners,
		smtpd.ListenerConfig{Name: "a", Addr: ":25"},
		smtpd.ListenerConfig{Name: "b", Addr: "[::1]:587"},
		smtpd.ListenerConfig{Name: "c", Addr: "localhost:2526"},
		smtpd.ListenerConfig{Name: "d", Addr: "unix:/run/portcullis/lmtp"},
		smtpd.ListenerConfig{Name: "e", Addr: "192.0.2.1:25"},
		smtpd.ListenerConfig{Name: "f", Addr: "[::]:25"},
		smtpd.ListenerConfig{Name: "g", Addr: "mx.example.org:25"},
	)
	cfg.IMAP.TLSAddr = "0.0.0.0:993"
	cfg.ManageSieve.Addr = ":4190"
	cfg.HTTP.Addr = "127.0.0.2:8025"
	require.Equal(t, []string{":25", "192.0.2.1:25", "[::]:25", "mx.example.org:25", "0.0.0.0:993", ":4190"}, exposed(cfg))
}
