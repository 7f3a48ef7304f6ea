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
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: %w", cfg.Addr, err)
	}
	defer raw.Close()
	context.AfterFunc(ctx, func() { raw.Close() })
	tc := cfg.TLSConfig
	if tc == nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		tc = &tls.Config{ServerName: host}
	}
	var conn net.Conn = raw
	if cfg.Security == "tls" {
		conn = tls.Client(raw, tc)
	}
	ms := &msConn{c: &deadlineConn{Conn: conn, timeout: cfg.Timeout}}
	ms.r = bufio.NewReader(ms.c)
	if _, err := ms.response(nil); err != nil { // the greeting: capabilities, then OK
		return nil, fmt.Errorf("migrate: managesieve %s: greeting: %w", cfg.Addr, err)
	}
	if cfg.Security == "starttls" || cfg.Security == "" {
		if _, err := ms.cmd("STARTTLS", nil); err != nil {
			return nil, fmt.Errorf("migrate: managesieve %s: STARTTLS: %w", cfg.Addr, err)
		}
		ms.c = &deadlineConn{Conn: tls.Client(raw, tc), timeout: cfg.Timeout}
		ms.r = bufio.NewReader(ms.c)
		if _, err := ms.response(nil); err != nil { // capabilities again (RFC 5804 §2.2)
			return nil, fmt.Errorf("migrate: managesieve %s: after STARTTLS: %w", cfg.Addr, err)
		}
	}
	authc := cfg.User
	if cfg.Master != "" {
		authc = cfg.Master
	}
	authz := ""
	if cfg.Master != "" {
		authz = cfg.User
	}
	if _, err := ms.cmd(`AUTHENTICATE "PLAIN" "`+plainResponse(authz, authc, cfg.Password)+`"`, nil); err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: login as %s: %w", cfg.Addr, cfg.User, err)
	}
	var names []string
	active := ""
	if _, err := ms.cmd("LISTSCRIPTS", func(line []string) {
		if len(line) >= 1 {
			names = append(names, line[0])
			if len(line) >= 2 && strings.EqualFold(line[1], "ACTIVE") {
				active = line[0]
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("migrate: managesieve %s: LISTSCRIPTS: %w", cfg.Addr, err)
	}
	var out []Script
	for _, n := range names {
		var text []byte
		if _, err := ms.cmd("GETSCRIPT "+quoteSieve(n), func(line []string) {
			if len(line) >= 1 {
				text = []byte(line[0])
			}
		}); err != nil {
			return nil, fmt.Errorf("migrate: managesieve %s: GETSCRIPT %q: %w", cfg.Addr, n, err)
		}
		out = append(out, Script{Name: n, Text: text, Active: n == active})
	}
	ms.cmd("LOGOUT", nil)
	return out, nil
}

func quoteSieve(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// msConn is a ManageSieve client connection.
type msConn struct {
	c net.Conn
	r *bufio.Reader
}

func (m *msConn) cmd(line string, data func([]string)) (string, error) {
	if _, err := io.WriteString(m.c, line+"\r\n"); err != nil {
		return "", err
	}
	return m.response(data)
}

// response reads response lines until OK, NO or BYE (RFC 5804 §1.2); each other line's
// strings (quoted, literal {N} or atoms) go to data.
func (m *msConn) response(data func([]string)) (string, error) {
	for n := 0; n < 100_000; n++ {
		words, err := m.line()
		if err != nil {
			return "", err
		}
		if len(words) > 0 {
			switch strings.ToUpper(words[0]) {
			case "OK":
				return strings.Join(words[1:], " "), nil
			case "NO", "BYE":
				return "", fmt.Errorf("%s", strings.Join(words, " "))
			}
		}
		if data != nil {
			data(words)
		}
	}
	return "", errors.New("response too long")
}

// line reads one response line as its words: atoms, quoted strings, literals.
func (m *msConn) line() ([]string, error) {
	var words []string
	for {
		c, err := m.r.ReadByte()
		if err != nil {
			return nil, err
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
			words = append(words, b.String())
		case c == '{':
			spec, err := m.r.ReadString('}')
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(spec, "}"), "+"))
			if err != nil || n < 0 || n > maxScriptSize {
				return nil, fmt.Errorf("bad literal {%s", spec)
			}
			if _, err := m.r.ReadString('\n'); err != nil {
				return nil, err
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(m.r, b); err != nil {
				return nil, err
			}
			words = append(words, string(b))
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
			words = append(words, b.String())
		}
	}
}
