package migrate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// ImapConfig says how to reach a user's mail on an IMAP server.
type ImapConfig struct {
	// Addr is HOST:PORT.
	Addr string
	// Security: "tls" (implicit TLS, port 993), "starttls", or "none" (loopback and
	// trusted networks only: the password crosses in clear).
	Security  string
	TLSConfig *tls.Config
	// User is the mailbox to read; Password is its password, or the master's.
	User, Password string
	// Master, when set, logs in as this admin/master user on behalf of User with SASL
	// PLAIN's authorization identity (RFC 4616 §2; Dovecot master users, Cyrus admins).
	Master string
	// POP3Addr, when set, is the source's POP3 server (plain or "tls:" prefixed): the
	// INBOX's POP3 unique-ids are read from it (RFC 1939 §7 UIDL) and kept.
	POP3Addr string
	// Timeout bounds each network wait; default 2 minutes.
	Timeout time.Duration
	// Dial, when set, opens the TCP connections to the source (IMAP, POP3 and
	// ManageSieve, before any TLS) instead of a plain dial within Timeout: portcullis
	// user move sends a PROXY header first with it.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// dial opens a connection to addr with Dial, or a plain TCP dial.
func (c ImapConfig) dial(ctx context.Context, addr string) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx, addr)
	}
	d := net.Dialer{Timeout: c.Timeout}
	return d.DialContext(ctx, "tcp", addr)
}

// ImapSource reads a user's mail from an IMAP server with go-imap's client.
type ImapSource struct {
	cfg      ImapConfig
	c        *imapclient.Client
	conn     net.Conn
	selected string
	uidls    map[uint32]string // INBOX UID → POP3 unique-id, when POP3Addr is set
}

// DialImap connects and logs in.
func DialImap(ctx context.Context, cfg ImapConfig) (*ImapSource, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	conn, err := cfg.dial(ctx, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("migrate: imap %s: %w", cfg.Addr, err)
	}
	s := &ImapSource{cfg: cfg}
	tc := cfg.TLSConfig
	if tc == nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		tc = &tls.Config{ServerName: host}
	}
	var tconn net.Conn = conn
	if cfg.Security == "tls" {
		tconn = tls.Client(conn, tc)
	}
	s.conn = &deadlineConn{Conn: tconn, timeout: cfg.Timeout}
	opts := &imapclient.Options{TLSConfig: tc}
	switch cfg.Security {
	case "tls", "none", "":
		s.c = imapclient.New(s.conn, opts)
	case "starttls":
		if s.c, err = imapclient.NewStartTLS(s.conn, opts); err != nil {
			conn.Close()
			return nil, fmt.Errorf("migrate: imap %s: STARTTLS: %w", cfg.Addr, err)
		}
	default:
		conn.Close()
		return nil, fmt.Errorf("migrate: imap security %q: want tls, starttls or none", cfg.Security)
	}
	// A cancelled context ends the session at once, whatever it waits for.
	context.AfterFunc(ctx, func() { conn.Close() })
	if err := s.c.WaitGreeting(); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("migrate: imap %s: greeting: %w", cfg.Addr, err)
	}
	if cfg.Master != "" {
		err = s.c.Authenticate(sasl.NewPlainClient(cfg.User, cfg.Master, cfg.Password))
	} else {
		err = s.c.Login(cfg.User, cfg.Password).Wait()
	}
	if err != nil {
		s.c.Close()
		return nil, fmt.Errorf("migrate: imap %s: login as %s: %w", cfg.Addr, cfg.User, err)
	}
	if cfg.POP3Addr != "" {
		if s.uidls, err = s.readUIDLs(ctx); err != nil {
			s.c.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close logs out.
func (s *ImapSource) Close() error {
	s.c.Logout().Wait()
	return s.c.Close()
}

// Folders lists every folder with LIST "" "*", its special use (RFC 6154) and
// subscription (RFC 5258 RETURN (SUBSCRIBED)).
func (s *ImapSource) Folders(ctx context.Context) ([]SourceFolder, error) {
	caps := s.c.Caps()
	opts := &imap.ListOptions{}
	ext := caps.Has(imap.CapListExtended) || caps.Has(imap.CapIMAP4rev2)
	if ext {
		opts.ReturnSubscribed = true
		if caps.Has(imap.CapSpecialUse) || caps.Has(imap.CapIMAP4rev2) {
			opts.ReturnSpecialUse = true
		}
	}
	list, err := s.c.List("", "*", opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("migrate: imap LIST: %w", err)
	}
	// Without LIST-EXTENDED (RFC 5258) subscriptions are not read.
	var out []SourceFolder
	for _, l := range list {
		f := SourceFolder{ref: l.Mailbox, Name: l.Mailbox}
		if l.Delim != 0 && l.Delim != '/' {
			f.Name = strings.ReplaceAll(strings.ReplaceAll(l.Mailbox, "/", "_"), string(l.Delim), "/")
		}
		if strings.EqualFold(f.Name, "INBOX") {
			f.Name = "INBOX"
		}
		skip := false
		for _, a := range l.Attrs {
			switch strings.ToLower(string(a)) {
			case `\noselect`:
				f.NoSelect = true
			case `\nonexistent`:
				skip = true
			case `\subscribed`:
				f.Subscribed = true
			case `\sent`, `\drafts`, `\junk`, `\trash`, `\archive`:
				f.SpecialUse = `\` + strings.ToUpper(string(a[1:2])) + strings.ToLower(string(a[2:]))
			}
		}
		if !skip {
			out = append(out, f)
		}
	}
	return out, nil
}

func (s *ImapSource) examine(f *SourceFolder) error {
	data, err := s.c.Select(f.ref, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("migrate: imap EXAMINE %q: %w", f.ref, err)
	}
	f.UIDValidity = data.UIDValidity
	s.selected = f.ref
	return nil
}

// UIDs lists the folder's UIDs (UID SEARCH ALL, RFC 3501 §6.4.4).
func (s *ImapSource) UIDs(ctx context.Context, f *SourceFolder) ([]uint32, error) {
	if err := s.examine(f); err != nil {
		return nil, err
	}
	data, err := s.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("migrate: imap UID SEARCH %q: %w", f.ref, err)
	}
	all := data.AllUIDs()
	out := make([]uint32, len(all))
	for i, u := range all {
		out[i] = uint32(u)
	}
	slices.Sort(out)
	return out, nil
}

// MessagesOf lists the flags, internal dates and sizes of uids (one UID FETCH).
func (s *ImapSource) MessagesOf(ctx context.Context, f SourceFolder, uids []uint32) ([]SourceMessage, error) {
	if s.selected != f.ref {
		if err := s.examine(&f); err != nil {
			return nil, err
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	// One range, not a list: a list of thousands of scattered UIDs can exceed a server's
	// command line limit (Dovecot's imap_max_line_length is 64 KiB). Messages that arrived
	// inside the range since UIDs was called are left for their own window or run.
	want := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		want[u] = true
	}
	all, err := s.fetchMeta(f, imap.UIDSet{imap.UIDRange{Start: imap.UID(uids[0]), Stop: imap.UID(uids[len(uids)-1])}})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, m := range all {
		if want[m.UID] {
			out = append(out, m)
		}
	}
	return out, nil
}

// Messages lists the folder's UIDs, flags, internal dates and sizes (one UID FETCH 1:*).
func (s *ImapSource) Messages(ctx context.Context, f *SourceFolder) ([]SourceMessage, error) {
	if err := s.examine(f); err != nil {
		return nil, err
	}
	return s.fetchMeta(*f, imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}})
}

func (s *ImapSource) fetchMeta(f SourceFolder, set imap.UIDSet) ([]SourceMessage, error) {
	if len(set) == 0 {
		return nil, nil
	}
	cmd := s.c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true})
	var out []SourceMessage
	for {
		md := cmd.Next()
		if md == nil {
			break
		}
		b, err := md.Collect()
		if err != nil {
			cmd.Close()
			return nil, fmt.Errorf("migrate: imap FETCH %q: %w", f.ref, err)
		}
		m := SourceMessage{ID: strconv.FormatUint(uint64(b.UID), 10), UID: uint32(b.UID), Date: b.InternalDate, Size: b.RFC822Size, seq: b.SeqNum}
		for _, fl := range b.Flags {
			m.Flags = append(m.Flags, string(fl))
		}
		if f.Name == "INBOX" && s.uidls != nil {
			m.UIDL = s.uidls[m.UID]
		}
		out = append(out, m)
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("migrate: imap FETCH %q: %w", f.ref, err)
	}
	// UID order: the copy keeps it, and KeepUIDs relies on it.
	sortByUID(out)
	return out, nil
}

// Fetch streams BODY.PEEK[] of msgs (RFC 3501 §6.4.5) in batches: the literal goes
// straight from the socket into fn.
func (s *ImapSource) Fetch(ctx context.Context, f SourceFolder, msgs []SourceMessage, fn func(SourceMessage, io.Reader) error) error {
	if s.selected != f.ref {
		if err := s.examine(&f); err != nil {
			return err
		}
	}
	byUID := make(map[uint32]SourceMessage, len(msgs))
	var set imap.UIDSet
	for _, m := range msgs {
		byUID[m.UID] = m
		set.AddNum(imap.UID(m.UID))
	}
	if len(msgs) == 0 {
		return nil
	}
	cmd := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var ferr error
	for {
		md := cmd.Next()
		if md == nil {
			break
		}
		var uid uint32
		for {
			item := md.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(it.UID)
			case imapclient.FetchItemDataBodySection:
				m, ok := byUID[uid]
				if !ok {
					// The UID came after the body: fall back to the sequence number.
					for _, x := range msgs {
						if x.seq == md.SeqNum {
							m, ok = x, true
						}
					}
				}
				if !ok || ferr != nil || it.Literal == nil {
					continue
				}
				if err := fn(m, it.Literal); err != nil {
					ferr = err
				}
				io.Copy(io.Discard, it.Literal)
			}
		}
	}
	if err := cmd.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("migrate: imap FETCH %q: %w", f.ref, err)
	}
	return ferr
}

// readUIDLs reads the INBOX's POP3 unique-ids (RFC 1939 §7) and pairs them with the IMAP
// UIDs: a POP3 maildrop lists the INBOX in UID order, so the n-th message is the n-th UID
// when the counts and sizes agree. When they do not (mail arrived between the two
// sessions), the unique-ids are not used.
func (s *ImapSource) readUIDLs(ctx context.Context) (map[uint32]string, error) {
	list, err := pop3UIDLs(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	f := SourceFolder{ref: "INBOX", Name: "INBOX"}
	save := s.uidls
	s.uidls = nil
	msgs, err := s.Messages(ctx, &f)
	s.uidls = save
	if err != nil {
		return nil, err
	}
	if len(msgs) != len(list) {
		return nil, fmt.Errorf("migrate: pop3 %s lists %d messages, imap INBOX %d: run again when no mail arrives", s.cfg.POP3Addr, len(list), len(msgs))
	}
	out := make(map[uint32]string, len(msgs))
	for i, m := range msgs {
		if list[i].size != m.Size {
			return nil, fmt.Errorf("migrate: pop3 message %d has %d octets, imap UID %d %d: cannot pair their unique-ids", i+1, list[i].size, m.UID, m.Size)
		}
		out[m.UID] = list[i].uidl
	}
	return out, nil
}

func sortByUID(ms []SourceMessage) {
	for i := 1; i < len(ms); i++ {
		if ms[i-1].UID > ms[i].UID {
			sortSlice(ms)
			return
		}
	}
}

// deadlineConn gives every read and write a deadline, so a stalled server fails the run
// instead of hanging it.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

var errNoUIDL = errors.New("migrate: the POP3 server has no UIDL")
