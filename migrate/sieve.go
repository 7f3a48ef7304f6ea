package migrate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Script is a user's Sieve script at the old system.
type Script struct {
	Name   string
	Text   []byte
	Active bool
}

// ScriptTarget stores a user's scripts at the new system (the ManageSieve script store).
type ScriptTarget interface {
	PutScript(ctx context.Context, name string, text []byte) error
	SetActive(ctx context.Context, name string) error
}

// ScriptResult says what happened to one script.
type ScriptResult struct {
	Name   string
	Active bool
	Action string // "stored", "checked" (no target), "not compiled"
	Err    error  // the compiler's complaint, or the target's
}

// maxScriptSize bounds a script read from a source (Dovecot's sieve_max_script_size is 1M).
const maxScriptSize = 1 << 20

// MigrateScripts compiles each script with compile (the sieve package's compiler) and
// stores those that compile in dst, keeping the active one active. Scripts that do not
// compile are reported with the compiler's error, never dropped silently; with dst nil
// the scripts are only checked.
func MigrateScripts(ctx context.Context, scripts []Script, dst ScriptTarget, compile func([]byte) error) ([]ScriptResult, error) {
	var out []ScriptResult
	for _, s := range scripts {
		r := ScriptResult{Name: s.Name, Active: s.Active, Action: "checked"}
		if err := compile(s.Text); err != nil {
			r.Action, r.Err = "not compiled", err
			out = append(out, r)
			continue
		}
		if dst != nil {
			err := dst.PutScript(ctx, s.Name, s.Text)
			if err == nil && s.Active {
				err = dst.SetActive(ctx, s.Name)
			}
			if err != nil {
				r.Action, r.Err = "failed", err
			} else {
				r.Action = "stored"
			}
		}
		out = append(out, r)
	}
	return out, ctx.Err()
}

// ScriptsFromDir reads the *.sieve files of dir; active names the active script's file
// (Dovecot's ~/.dovecot.sieve symlink, or a file name), "" when none is active.
func ScriptsFromDir(dir, active string) ([]Script, error) {
	activeName := ""
	if active != "" {
		target := active
		if l, err := os.Readlink(active); err == nil {
			target = l
		}
		activeName = strings.TrimSuffix(filepath.Base(target), ".sieve")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.sieve"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Script
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxScriptSize {
			return nil, fmt.Errorf("migrate: sieve script %s is larger than %d bytes", f, maxScriptSize)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("migrate: sieve script: %w", err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".sieve")
		out = append(out, Script{Name: name, Text: b, Active: name == activeName})
	}
	return out, nil
}

// ScriptsFromManageSieve logs in to a ManageSieve server (RFC 5804; AUTHENTICATE PLAIN,
// with an authorization identity for a master login, after STARTTLS unless Security is
// "none" or "tls") and returns the user's scripts (LISTSCRIPTS, GETSCRIPT).
func ScriptsFromManageSieve(ctx context.Context, cfg ImapConfig) ([]Script, error) {
	c, err := DialManageSieve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Scripts()
}

// SieveClient is a logged-in ManageSieve session (RFC 5804) with a source server: it
// reads the user's scripts and, once they are copied, removes them.
type SieveClient struct {
	addr string
	raw  net.Conn
	ms   *msConn
	stop func() bool // of the context.AfterFunc closing raw
}

// DialManageSieve connects to cfg.Addr and logs in as ScriptsFromManageSieve does
// (cfg.Dial, when set, opens the connection).
func DialManageSieve(ctx context.Context, cfg ImapConfig) (*SieveClient, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	raw, err := cfg.dial(ctx, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: %w", cfg.Addr, err)
	}
	c := &SieveClient{addr: cfg.Addr, raw: raw, stop: context.AfterFunc(ctx, func() { raw.Close() })}
	if err := c.login(cfg); err != nil {
		c.stop()
		raw.Close()
		return nil, fmt.Errorf("migrate: managesieve %s: %w", cfg.Addr, err)
	}
	return c, nil
}

func (c *SieveClient) login(cfg ImapConfig) error {
	tc := cfg.TLSConfig
	if tc == nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		tc = &tls.Config{ServerName: host}
	}
	var conn net.Conn = c.raw
	switch cfg.Security {
	case "tls":
		conn = tls.Client(c.raw, tc)
	case "starttls", "", "none":
	default:
		return fmt.Errorf("security %q: want starttls, tls or none", cfg.Security)
	}
	c.ms = newMSConn(&deadlineConn{Conn: conn, timeout: cfg.Timeout})
	if _, err := c.ms.response(nil); err != nil { // the greeting: capabilities, then OK
		return fmt.Errorf("greeting: %w", err)
	}
	if cfg.Security == "starttls" || cfg.Security == "" {
		if _, err := c.ms.cmd("STARTTLS", nil); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
		c.ms = newMSConn(&deadlineConn{Conn: tls.Client(c.raw, tc), timeout: cfg.Timeout})
		if _, err := c.ms.response(nil); err != nil { // capabilities again (RFC 5804 §2.2)
			return fmt.Errorf("after STARTTLS: %w", err)
		}
	}
	authc, authz := cfg.User, ""
	if cfg.Master != "" {
		authc, authz = cfg.Master, cfg.User
	}
	if _, err := c.ms.cmd(`AUTHENTICATE "PLAIN" "`+plainResponse(authz, authc, cfg.Password)+`"`, nil); err != nil {
		return fmt.Errorf("login as %s: %w", cfg.User, err)
	}
	return nil
}

// Scripts returns the user's scripts (LISTSCRIPTS, then GETSCRIPT of each), the active
// one marked.
func (c *SieveClient) Scripts() ([]Script, error) {
	var out []Script
	if _, err := c.ms.cmd("LISTSCRIPTS", func(line []token) {
		// sieve-name [SP "ACTIVE"] (RFC 5804 §2.7); the name is a string, never an atom.
		if len(line) >= 1 && !line[0].atom {
			active := len(line) >= 2 && line[1].atom && strings.EqualFold(line[1].text, "ACTIVE")
			out = append(out, Script{Name: line[0].text, Active: active})
		}
	}); err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: LISTSCRIPTS: %w", c.addr, err)
	}
	for i := range out {
		text, err := c.Get(out[i].Name)
		if err != nil {
			return nil, err
		}
		out[i].Text = text
	}
	return out, nil
}

// Get returns one script's text (GETSCRIPT, RFC 5804 §2.9); a script that does not
// exist is an error matching ErrNoSieveScript.
func (c *SieveClient) Get(name string) ([]byte, error) {
	var text []byte
	got := false
	if _, err := c.ms.cmd("GETSCRIPT "+sieveString(name), func(line []token) {
		if len(line) >= 1 && !line[0].atom && !got {
			text, got = []byte(line[0].text), true
		}
	}); err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: GETSCRIPT %q: %w", c.addr, name, err)
	}
	if !got {
		return nil, fmt.Errorf("migrate: managesieve %s: GETSCRIPT %q: no script in the response", c.addr, name)
	}
	return text, nil
}

// SetActive makes name the active script; "" deactivates every script (RFC 5804 §2.8).
func (c *SieveClient) SetActive(name string) error {
	if _, err := c.ms.cmd("SETACTIVE "+sieveString(name), nil); err != nil {
		return fmt.Errorf("migrate: managesieve %s: SETACTIVE %q: %w", c.addr, name, err)
	}
	return nil
}

// Delete removes a script that is not active (DELETESCRIPT, RFC 5804 §2.10).
func (c *SieveClient) Delete(name string) error {
	if _, err := c.ms.cmd("DELETESCRIPT "+sieveString(name), nil); err != nil {
		return fmt.Errorf("migrate: managesieve %s: DELETESCRIPT %q: %w", c.addr, name, err)
	}
	return nil
}

// Close logs out and closes the connection.
func (c *SieveClient) Close() error {
	c.raw.SetDeadline(time.Now().Add(5 * time.Second))
	c.ms.cmd("LOGOUT", nil)
	c.stop()
	return c.raw.Close()
}

// ErrNoSieveScript is a NO (NONEXISTENT) answer: there is no script of that name.
var ErrNoSieveScript = errors.New("migrate: no such sieve script")

// sieveNo is a NO or BYE response (RFC 5804 §1.2, §1.3).
type sieveNo struct{ status, code, text string }

func (e *sieveNo) Error() string {
	s := e.status
	if e.code != "" {
		s += " (" + e.code + ")"
	}
	if e.text != "" {
		s += " " + e.text
	}
	return s
}

func (e *sieveNo) Is(target error) bool {
	return target == ErrNoSieveScript && strings.EqualFold(e.code, "NONEXISTENT")
}

// sieveString writes s as a ManageSieve string: quoted (RFC 5804 §4: no CR, LF or NUL
// inside, '"' and '\' escaped), else a non-synchronizing literal.
func sieveString(s string) string {
	if len(s) > 1024 || strings.ContainsAny(s, "\r\n\x00") {
		return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// msConn is a ManageSieve client connection.
type msConn struct {
	c net.Conn
	r *bufio.Reader
}

func newMSConn(c net.Conn) *msConn { return &msConn{c: c, r: bufio.NewReader(c)} }

func (m *msConn) cmd(line string, data func([]token)) (string, error) {
	if _, err := io.WriteString(m.c, line+"\r\n"); err != nil {
		return "", err
	}
	return m.response(data)
}

// token is one word of a response line: an atom (OK, NO, BYE, ACTIVE, a response code)
// or a string (quoted or literal). Only an atom ends a response: a script named "OK",
// or whose text is "NO", is a string.
type token struct {
	text string
	atom bool
}

// maxResponseLines bounds the lines of one response (a LISTSCRIPTS of that many
// scripts is far past any server's limit).
const maxResponseLines = 100_000

// response reads response lines until OK, NO or BYE (RFC 5804 §1.2); each other line's
// tokens go to data. It returns the OK line's text; NO and BYE are a *sieveNo.
func (m *msConn) response(data func([]token)) (string, error) {
	for n := 0; n < maxResponseLines; n++ {
		words, err := m.line()
		if err != nil {
			return "", err
		}
		if len(words) > 0 && words[0].atom {
			status := strings.ToUpper(words[0].text)
			switch status {
			case "OK", "NO", "BYE":
				// [SP "(" resp-code ")"] [SP string]; a code with arguments, as
				// (TAG "x") or (SASL "..."), runs to the atom that ends with ")".
				code, rest := "", words[1:]
				if len(rest) > 0 && rest[0].atom && strings.HasPrefix(rest[0].text, "(") {
					first := rest[0].text
					code = strings.TrimSuffix(strings.TrimPrefix(first, "("), ")")
					rest = rest[1:]
					if !strings.HasSuffix(first, ")") {
						for len(rest) > 0 {
							end := rest[0].atom && strings.HasSuffix(rest[0].text, ")")
							rest = rest[1:]
							if end {
								break
							}
						}
					}
				}
				var text []string
				for _, w := range rest {
					text = append(text, w.text)
				}
				if status == "OK" {
					return strings.Join(text, " "), nil
				}
				return "", &sieveNo{status: status, code: code, text: strings.Join(text, " ")}
			}
		}
		if data != nil {
			data(words)
		}
	}
	return "", errors.New("response too long")
}

// maxLineTokens bounds the tokens of one response line.
const maxLineTokens = 1000

// line reads one response line as its tokens: atoms, quoted strings, literals.
func (m *msConn) line() ([]token, error) {
	var words []token
	for {
		c, err := m.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if len(words) > maxLineTokens {
			return nil, errors.New("response line too long")
		}
		switch {
		case c == '\n':
			return words, nil
		case c == ' ' || c == '\r':
		case c == '"':
			var b strings.Builder
			for {
				c, err := m.r.ReadByte()
				if err != nil {
					return nil, err
				}
				if c == '\\' {
					if c, err = m.r.ReadByte(); err != nil {
						return nil, err
					}
				} else if c == '"' {
					break
				}
				if b.Len() > maxScriptSize {
					return nil, errors.New("string too long")
				}
				b.WriteByte(c)
			}
			words = append(words, token{text: b.String()})
		case c == '{':
			// Bounded reads: a server that sends "{" and then no "}" (or no end of
			// line) must not have the client gather it without end.
			spec, err := m.readUntil('}', 12)
			if err != nil {
				return nil, fmt.Errorf("bad literal {%.12s: %w", spec, err)
			}
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(spec, "}"), "+"))
			if err != nil || n < 0 || n > maxScriptSize {
				return nil, fmt.Errorf("bad literal {%s", spec)
			}
			// The literal's octets start after the CRLF that ends its length (RFC 5804 §4).
			if rest, err := m.readUntil('\n', 2); err != nil {
				return nil, fmt.Errorf("bad literal {%s%.20q: %w", spec, rest, err)
			} else if strings.TrimRight(rest, "\r\n") != "" {
				return nil, fmt.Errorf("bad literal {%s%.20q", spec, rest)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(m.r, b); err != nil {
				return nil, err
			}
			words = append(words, token{text: string(b)})
		default:
			var b strings.Builder
			b.WriteByte(c)
			for {
				p, err := m.r.Peek(1)
				if err != nil || p[0] == ' ' || p[0] == '\r' || p[0] == '\n' {
					break
				}
				m.r.ReadByte()
				if b.Len() > 1024 {
					return nil, errors.New("atom too long")
				}
				b.WriteByte(p[0])
			}
			words = append(words, token{text: b.String(), atom: true})
		}
	}
}

// errNoDelim is readUntil's: the delimiter did not come within the bytes allowed.
var errNoDelim = errors.New("no end within the length allowed")

// readUntil reads up to and including delim, at most max bytes.
func (m *msConn) readUntil(delim byte, max int) (string, error) {
	var b []byte
	for len(b) < max {
		c, err := m.r.ReadByte()
		if err != nil {
			return string(b), err
		}
		b = append(b, c)
		if c == delim {
			return string(b), nil
		}
	}
	return string(b), errNoDelim
}
