package migrate

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// pop3Entry is one line of a POP3 listing.
type pop3Entry struct {
	uidl string
	size int64
}

// maxPOP3Messages bounds a listing read from the source.
const maxPOP3Messages = 10_000_000

// pop3UIDLs logs in to the source's POP3 server (USER/PASS, or AUTH PLAIN with an
// authorization identity for a master login, RFC 5034) and returns UIDL and LIST in
// message-number order (RFC 1939 §5, §7). It quits without deleting anything.
func pop3UIDLs(ctx context.Context, cfg ImapConfig) ([]pop3Entry, error) {
	addr, useTLS := cfg.POP3Addr, false
	if a, ok := strings.CutPrefix(addr, "tls:"); ok {
		addr, useTLS = a, true
	}
	raw, err := cfg.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("migrate: pop3 %s: %w", addr, err)
	}
	defer raw.Close()
	conn := raw
	if useTLS {
		tc := cfg.TLSConfig
		if tc == nil {
			host, _, _ := net.SplitHostPort(addr)
			tc = &tls.Config{ServerName: host}
		}
		conn = tls.Client(raw, tc)
	}
	dc := &deadlineConn{Conn: conn, timeout: cfg.Timeout}
	if dc.timeout <= 0 {
		dc.timeout = 2 * time.Minute
	}
	r := bufio.NewReader(dc)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("migrate: pop3 %s: %w", addr, err)
		}
		return strings.TrimRight(l, "\r\n"), nil
	}
	cmd := func(c string, show string) (string, error) {
		if _, err := fmt.Fprintf(dc, "%s\r\n", c); err != nil {
			return "", fmt.Errorf("migrate: pop3 %s: %w", addr, err)
		}
		l, err := line()
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("migrate: pop3 %s: %s: %s", addr, show, l)
		}
		return l, nil
	}
	if l, err := line(); err != nil {
		return nil, err
	} else if !strings.HasPrefix(l, "+OK") {
		return nil, fmt.Errorf("migrate: pop3 %s: greeting %q", addr, l)
	}
	if cfg.Master != "" {
		resp := plainResponse(cfg.User, cfg.Master, cfg.Password)
		if _, err := cmd("AUTH PLAIN "+resp, "AUTH PLAIN"); err != nil {
			return nil, err
		}
	} else {
		if _, err := cmd("USER "+cfg.User, "USER"); err != nil {
			return nil, err
		}
		if _, err := cmd("PASS "+cfg.Password, "PASS"); err != nil {
			return nil, err
		}
	}
	multi := func(c string) ([][]string, error) {
		if _, err := cmd(c, c); err != nil {
			return nil, err
		}
		var out [][]string
		for {
			l, err := line()
			if err != nil {
				return nil, err
			}
			if l == "." {
				return out, nil
			}
			if len(out) >= maxPOP3Messages {
				return nil, fmt.Errorf("migrate: pop3 %s: more than %d messages", addr, maxPOP3Messages)
			}
			out = append(out, strings.Fields(l))
		}
	}
	uidl, err := multi("UIDL")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoUIDL, err)
	}
	list, err := multi("LIST")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(dc, "QUIT\r\n")
	if len(uidl) != len(list) {
		return nil, fmt.Errorf("migrate: pop3 %s: UIDL lists %d messages, LIST %d", addr, len(uidl), len(list))
	}
	out := make([]pop3Entry, len(uidl))
	for i := range uidl {
		if len(uidl[i]) != 2 || len(list[i]) < 2 || uidl[i][0] != strconv.Itoa(i+1) || list[i][0] != strconv.Itoa(i+1) {
			return nil, fmt.Errorf("migrate: pop3 %s: bad listing line %d", addr, i+1)
		}
		n, err := strconv.ParseInt(list[i][1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migrate: pop3 %s: bad size on line %d", addr, i+1)
		}
		out[i] = pop3Entry{uidl: uidl[i][1], size: n}
	}
	return out, nil
}
