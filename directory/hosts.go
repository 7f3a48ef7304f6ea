package directory

import (
	"fmt"
	"net"
	"strconv"
)

// Host is how the other nodes reach one mail host (back-end). An empty address follows
// the convention: the mail host's name is a DNS name or IP address of the back-end, with
// LMTP on port 24 (RFC 2033 §4's suggestion), IMAP over implicit TLS on 993 and POP3
// over implicit TLS on 995.
type Host struct {
	// LMTP is where front-ends deliver the host's users' mail (host:port or
	// unix:/path): the back-end's LMTP listener (smtp.listeners, mode: lmtp).
	LMTP string `yaml:"lmtp"`
	// IMAP is the back-end's IMAP listener with implicit TLS, which portcullis user move
	// reads a mailbox from.
	IMAP string `yaml:"imap"`
	// POP3 is the back-end's POP3 listener with implicit TLS, from which portcullis user
	// move reads the POP3 unique-ids it keeps.
	POP3 string `yaml:"pop3"`
	// ManageSieve is the back-end's ManageSieve listener (STARTTLS), from which
	// portcullis user move copies the user's Sieve scripts.
	ManageSieve string `yaml:"managesieve"`
}

// The conventional ports of a mail host without an entry in Config.Hosts.
const (
	DefaultLMTPPort = 24
	DefaultIMAPPort = 993
	DefaultPOP3Port = 995
	// DefaultManageSievePort is ManageSieve's registered port (RFC 5804 §1.8).
	DefaultManageSievePort = 4190
)

// HostOf returns how to reach the mail host name: its entry in Hosts, the addresses it
// leaves empty following the convention (NAME:24, NAME:993, NAME:995, NAME:4190). With Hosts empty
// every name follows the convention; otherwise a name not listed is an error. The empty
// name is DefaultHost; without one it is an error (the user's mailbox is nowhere known).
func (c Config) HostOf(name string) (Host, error) {
	if name == HostHere {
		name = c.DefaultHost
	}
	if name == "" {
		return Host{}, fmt.Errorf("directory: the user has no mail host and directory.default_host is not set")
	}
	// Once hosts are listed, only they are: a mistyped mail host in the directory is a
	// temporary error to fix, never a connection to whatever the name resolves to.
	h, ok := c.Hosts[name]
	if len(c.Hosts) > 0 && !ok {
		return Host{}, fmt.Errorf("directory: mail host %.80q is not in directory.hosts", name)
	}
	port := func(p int) string { return net.JoinHostPort(name, strconv.Itoa(p)) }
	if h.LMTP == "" {
		h.LMTP = port(DefaultLMTPPort)
	}
	if h.IMAP == "" {
		h.IMAP = port(DefaultIMAPPort)
	}
	if h.POP3 == "" {
		h.POP3 = port(DefaultPOP3Port)
	}
	if h.ManageSieve == "" {
		h.ManageSieve = port(DefaultManageSievePort)
	}
	return h, nil
}
