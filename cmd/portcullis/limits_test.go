package main

import (
	"testing"

	"github.com/portcullis-mail/portcullis/config"
)

// Every pool counts in the descriptor budget: the SMTP listeners', IMAP's, POP3's and
// ManageSieve's (a
// listener each for STARTTLS and implicit TLS), the HTTP server's, the deliveries'.
func TestDescriptorBudget(t *testing.T) {
	cfg := config.Default(t.TempDir())
	base, _ := descriptorBudget(cfg)
	cfg.IMAP.TLSAddr = "127.0.0.1:1993"
	withTLS, _ := descriptorBudget(cfg)
	if withTLS-base != defaultIMAPConns*fdsPerMailboxConn {
		t.Errorf("an implicit-TLS IMAP listener adds %d descriptors, want %d", withTLS-base, defaultIMAPConns*fdsPerMailboxConn)
	}
	cfg.IMAP.MaxConnections = 10
	cfg.POP3.MaxConnections = 5
	small, detail := descriptorBudget(cfg)
	if want := base - (defaultIMAPConns-10+defaultPOP3Conns-5)*fdsPerMailboxConn + 10*fdsPerMailboxConn; small != want {
		t.Errorf("budget %d (%s), want %d", small, detail, want)
	}
	cfg.POP3.Addr = ""
	if none, _ := descriptorBudget(cfg); small-none != 5*fdsPerMailboxConn {
		t.Errorf("a disabled POP3 listener still counts: %d", small-none)
	}
	cfg.ManageSieve.Addr = ""
	if none, _ := descriptorBudget(cfg); small-none != (5+defaultManageSieveConns)*fdsPerMailboxConn {
		t.Errorf("a disabled ManageSieve listener still counts: %d", small-none-5*fdsPerMailboxConn)
	}
}
