package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The page's secret keys live in a file (Config.SecretFile), never in the State
// database: a copy of the database (a backup of web.db, a read of the shared PostgreSQL
// tables) must not be enough to sign a digest ticket, which logs its holder in, or to
// know a session's CSRF token. The database keeps only a key id (keyID), a truncated
// HMAC that tells nodes with different files apart and reveals nothing of the key.
//
// The file holds one key a line (blank lines and # comments skipped). A line of hex
// digits is the key's bytes (openssl rand -hex 32); any other is used as it is; either
// way at least 32 bytes. The first key signs the tickets and derives the CSRF tokens;
// the others only check tickets: a rotation puts a new key first and keeps the old one
// below it until the tickets it signed have expired (Config.TicketLifetime), after which
// the old line is deleted (a key deleted at once: its tickets are refused at once, and
// their users log in with their password). A key may end with " until=RFC3339": it then
// checks only tickets that expire by that time, so that it cannot sign new ones; the
// upgrade from a version that kept the key in the database writes the old key so.

// minKeyLen is the shortest key accepted: 256 bits for HMAC-SHA256 (RFC 2104 §3).
const minKeyLen = 32

// maxKeys bounds the keys of the file: each is tried on every ticket.
const maxKeys = 16

// maxSecretFile bounds the file read.
const maxSecretFile = 64 << 10

// ticketKey is a key that checks tickets.
type ticketKey struct {
	key   []byte
	until int64 // Unix seconds; 0: none. A ticket expiring later is refused.
}

// keys are the page's keys, read from the secret file.
type keys struct {
	check []ticketKey // check[0] is the signing key
	csrf  []byte      // derived from the signing key
}

func (k *keys) sign() []byte { return k.check[0].key }

// derive returns the subkey of key for purpose: HMAC-SHA256(key, purpose), so that a
// token of one use (a CSRF token) tells nothing about the key of another (tickets).
func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("portcullis web " + purpose))
	return m.Sum(nil)
}

// keyID names key in the database without revealing it.
func keyID(key []byte) string { return hex.EncodeToString(derive(key, "key id")[:8]) }

// csrfToken is the CSRF token of the session whose cookie holds tok: derived, not
// stored, so that the database holds no token a forged form could carry.
func (k *keys) csrfToken(tok string) string {
	m := hmac.New(sha256.New, k.csrf)
	m.Write([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// parseKeys reads the secret file's content.
func parseKeys(path string, b []byte) (*keys, error) {
	k := &keys{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		text, opt, _ := strings.Cut(line, " ")
		tk := ticketKey{key: []byte(text)}
		if d, err := hex.DecodeString(text); err == nil {
			tk.key = d
		}
		if len(tk.key) < minKeyLen {
			return nil, fmt.Errorf("web: secret_file %s line %d: the key has %d bytes, fewer than %d (openssl rand -hex 32 makes one)", path, n+1, len(tk.key), minKeyLen)
		}
		if opt = strings.TrimSpace(opt); opt != "" {
			v, ok := strings.CutPrefix(opt, "until=")
			t, err := time.Parse(time.RFC3339, v)
			if !ok || err != nil {
				return nil, fmt.Errorf("web: secret_file %s line %d: after the key only until=RFC3339 may follow", path, n+1)
			}
			tk.until = t.Unix()
		}
		if len(k.check) == maxKeys {
			return nil, fmt.Errorf("web: secret_file %s: more than %d keys", path, maxKeys)
		}
		k.check = append(k.check, tk)
	}
	if len(k.check) == 0 {
		return nil, fmt.Errorf("web: secret_file %s holds no key (openssl rand -hex 32 makes one)", path)
	}
	if k.check[0].until != 0 {
		return nil, fmt.Errorf("web: secret_file %s: the first key signs new tickets and may not have until=", path)
	}
	k.csrf = derive(k.sign(), "csrf")
	return k, nil
}

// readKeys reads the secret file; it refuses one that other users may read.
func readKeys(path string) (*keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("web: secret_file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("web: secret_file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("web: secret_file %s may be read by every user (mode %v): chmod o-rwx it, and make a new key, since it may have been read", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("web: secret_file %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("web: secret_file %s is larger than %d bytes", path, maxSecretFile)
	}
	return parseKeys(path, b)
}

// writeKeys creates the secret file with content, mode 0600, atomically: it is written
// in full beside it and linked in place, which fails if the file appeared meanwhile
// (then the caller reads that one).
func writeKeys(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".web-secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadKeys returns the page's keys from path. With a SQLite State (one node) a missing
// file is created with a random key; with the PostgreSQL State the nodes share, it is an
// error, since a key made here would not be the other nodes' and each would refuse the
// others' tickets. legacy is a key an older version kept in DATA/web.key.
//
// The upgrade from a version that kept the ticket key in the database (web_keys, name
// 'ticket'): when this start creates the file, the old key goes in it as a second key
// with until= now + lifetime, so the links already mailed work until they expire and a
// copy of the old database can sign none that expires later; the key is then deleted
// from the database (and the SQLite file vacuumed, so its bytes are gone from it).
func loadKeys(ctx context.Context, st *State, path string, legacy []byte, lifetime time.Duration, warn func(string, ...any)) (*keys, error) {
	old, err := st.legacyKey(ctx)
	if err != nil {
		return nil, err
	}
	if old == nil && len(legacy) >= minKeyLen {
		old = legacy
	}
	k, err := readKeys(path)
	switch {
	case err == nil:
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("web: secret_file %s cannot be read (%w): the page's keys must be readable by the server", path, err)
	case st.db.Postgres():
		return nil, fmt.Errorf("web: secret_file %s does not exist: with the state in PostgreSQL every node needs the same file: make it once (umask 077; openssl rand -hex 32 > %s) and copy it to each node", path, path)
	default:
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		content := "# The web page's keys (portcullis): the first signs the digest's links.\n" + hex.EncodeToString(fresh) + "\n"
		if old != nil {
			content += hex.EncodeToString(old) + " until=" + time.Now().Add(lifetime).UTC().Format(time.RFC3339) + "\n"
		}
		if err := writeKeys(path, content); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("web: creating secret_file %s: %w", path, err)
		}
		if k, err = readKeys(path); err != nil {
			return nil, err
		}
	}
	if old != nil && !k.has(old) && warn != nil {
		warn("web: the ticket key an older version kept is not in secret_file: the digest links mailed before the upgrade no longer work", "file", path)
	}
	if err := st.dropLegacyKey(ctx, warn); err != nil {
		return nil, err
	}
	if prev, err := st.swapKeyID(ctx, keyID(k.sign())); err != nil {
		return nil, err
	} else if prev != "" && !k.hasID(prev) && warn != nil {
		warn("web: the key that signed until now is not in secret_file (the file was replaced, or the nodes' files differ): the links and forms it made are refused, and nodes with different files refuse each other's", "file", path)
	}
	// A key whose until= has passed checks no link (every link it could accept has
	// expired), so it is not refused; but it is a secret kept for nothing: say so.
	for i, c := range k.check[1:] {
		if c.until != 0 && c.until < time.Now().Unix() && warn != nil {
			warn("web: an old key of secret_file is past its until=: it checks no link any more; delete its line", "file", path, "key", i+2)
		}
	}
	return k, nil
}

func (k *keys) has(key []byte) bool {
	for _, c := range k.check {
		if hmac.Equal(c.key, key) {
			return true
		}
	}
	return false
}

func (k *keys) hasID(id string) bool {
	for _, c := range k.check {
		if keyID(c.key) == id {
			return true
		}
	}
	return false
}
