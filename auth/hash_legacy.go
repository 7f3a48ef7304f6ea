package auth

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Legacy schemes, so that users migrated from Dovecot, OpenLDAP or a Unix passwd keep
// their passwords: Dovecot's {SSHA} {SSHA256} {SSHA512} {SHA} {SHA256} {SHA512} (base64 of
// the digest of password+salt, then the salt; RFC 2307 §5.3 userPassword syntax as
// OpenLDAP writes it) and {SHA256-CRYPT} {SHA512-CRYPT} ("$5$"/"$6$", Drepper's SHA-crypt
// as in glibc). They are only verified: a successful login replaces them with argon2id
// (VerifyPassword reports rehash), and nothing new is hashed with them.

// legacyScheme splits "{SCHEME}rest" (or a bare "$5$"/"$6$" crypt string) into the
// scheme's name and the rest; ok is false for anything else.
func legacyScheme(encoded string) (scheme, rest string, ok bool) {
	if strings.HasPrefix(encoded, "{") {
		if i := strings.IndexByte(encoded, '}'); i > 0 {
			s := strings.ToUpper(encoded[1:i])
			switch s {
			case "SSHA", "SSHA256", "SSHA512", "SHA", "SHA1", "SHA256", "SHA512":
				return s, encoded[i+1:], true
			case "SHA256-CRYPT", "SHA512-CRYPT", "CRYPT":
				rest = encoded[i+1:]
				if strings.HasPrefix(rest, "$5$") {
					return "SHA256-CRYPT", rest, true
				}
				if strings.HasPrefix(rest, "$6$") {
					return "SHA512-CRYPT", rest, true
				}
			}
		}
		return "", "", false
	}
	if strings.HasPrefix(encoded, "$5$") {
		return "SHA256-CRYPT", encoded, true
	}
	if strings.HasPrefix(encoded, "$6$") {
		return "SHA512-CRYPT", encoded, true
	}
	return "", "", false
}

// checkLegacy reports whether a legacy hash is well formed.
func checkLegacy(scheme, rest string) error {
	switch scheme {
	case "SHA256-CRYPT", "SHA512-CRYPT":
		id, _, _, err := parseShaCrypt(rest)
		if err != nil {
			return err
		}
		// The digest: 86 (SHA-512) or 43 (SHA-256) characters of the crypt alphabet.
		want := 86
		if id == "$5$" {
			want = 43
		}
		digest := rest[strings.LastIndexByte(rest, '$')+1:]
		if len(digest) != want || strings.Trim(digest, cryptB64) != "" {
			return fmt.Errorf("%w: SHA-crypt digest", errBadHash)
		}
		return nil
	}
	h, size := digestOf(scheme)
	if h == nil {
		return fmt.Errorf("%w: scheme %s", errBadHash, scheme)
	}
	raw, err := decodeB64Any(rest)
	if err != nil || len(raw) < size || (!salted(scheme) && len(raw) != size) || len(raw) > size+64 {
		return fmt.Errorf("%w: {%s} value", errBadHash, scheme)
	}
	return nil
}

func salted(scheme string) bool { return strings.HasPrefix(scheme, "SSHA") }

func digestOf(scheme string) (func() hash.Hash, int) {
	switch scheme {
	case "SSHA", "SHA", "SHA1":
		return sha1.New, sha1.Size
	case "SSHA256", "SHA256":
		return sha256.New, sha256.Size
	case "SSHA512", "SHA512":
		return sha512.New, sha512.Size
	}
	return nil, 0
}

func decodeB64Any(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// verifyLegacy compares password with a legacy hash in constant time.
func verifyLegacy(scheme, rest, password string) (bool, error) {
	if err := checkLegacy(scheme, rest); err != nil {
		return false, err
	}
	switch scheme {
	case "SHA256-CRYPT", "SHA512-CRYPT":
		want, err := shaCrypt(password, rest)
		if err != nil {
			return false, err
		}
		return subtle.ConstantTimeCompare([]byte(want), []byte(rest)) == 1, nil
	}
	newH, size := digestOf(scheme)
	raw, _ := decodeB64Any(rest)
	h := newH()
	h.Write([]byte(password))
	h.Write(raw[size:]) // the salt (empty for unsalted schemes)
	return subtle.ConstantTimeCompare(h.Sum(nil), raw[:size]) == 1, nil
}

const cryptB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// maxShaCryptRounds bounds the work an imported hash can demand per login (glibc allows
// 999,999,999; Dovecot writes 5,000).
const maxShaCryptRounds = 1_000_000

// parseShaCrypt splits "$6$[rounds=N$]salt$hash".
func parseShaCrypt(s string) (id string, rounds int, salt string, err error) {
	if len(s) < 3 || s[0] != '$' || (s[1] != '5' && s[1] != '6') || s[2] != '$' {
		return "", 0, "", fmt.Errorf("%w: not SHA-crypt", errBadHash)
	}
	id, rest := s[:3], s[3:]
	rounds = 5000
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, after, found := strings.Cut(r, "$")
		v, err := strconv.Atoi(n)
		if !found || err != nil {
			return "", 0, "", fmt.Errorf("%w: SHA-crypt rounds", errBadHash)
		}
		rounds = min(max(v, 1000), 999_999_999)
		rest = after
	}
	if rounds > maxShaCryptRounds {
		return "", 0, "", fmt.Errorf("%w: SHA-crypt rounds %d above %d", errBadHash, rounds, maxShaCryptRounds)
	}
	salt, _, _ = strings.Cut(rest, "$")
	if len(salt) > 16 {
		salt = salt[:16]
	}
	return id, rounds, salt, nil
}

// shaCrypt computes the SHA-crypt string of password with the id, rounds and salt of
// setting ("Unix crypt using SHA-256 and SHA-512", U. Drepper, 2008).
func shaCrypt(password, setting string) (string, error) {
	id, rounds, salt, err := parseShaCrypt(setting)
	if err != nil {
		return "", err
	}
	newH, size := sha512.New, 64
	if id == "$5$" {
		newH, size = sha256.New, 32
	}
	pw, sl := []byte(password), []byte(salt)
	sum := func(parts ...[]byte) []byte {
		h := newH()
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	b := sum(pw, sl, pw)
	h := newH()
	h.Write(pw)
	h.Write(sl)
	for i := len(pw); i > 0; i -= size {
		h.Write(b[:min(i, size)])
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			h.Write(b)
		} else {
			h.Write(pw)
		}
	}
	a := h.Sum(nil)
	h = newH()
	for range len(pw) {
		h.Write(pw)
	}
	dp := h.Sum(nil)
	p := repeatTo(dp, len(pw))
	h = newH()
	for range 16 + int(a[0]) {
		h.Write(sl)
	}
	ds := h.Sum(nil)
	s := repeatTo(ds, len(sl))
	c := a
	for i := range rounds {
		h = newH()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(nil)
	}
	var out bytes.Buffer
	out.WriteString(id)
	if strings.Contains(setting, "rounds=") {
		fmt.Fprintf(&out, "rounds=%d$", rounds)
	}
	out.WriteString(salt)
	out.WriteByte('$')
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for range n {
			out.WriteByte(cryptB64[w&0x3f])
			w >>= 6
		}
	}
	// The byte order of the encoding is the specification's table: triples (i, i+n,
	// i+2n) rotated by i mod 3.
	if size == 64 {
		for i := range 21 {
			x, y, z := c[i], c[i+21], c[i+42]
			switch i % 3 {
			case 0:
				enc(x, y, z, 4)
			case 1:
				enc(y, z, x, 4)
			default:
				enc(z, x, y, 4)
			}
		}
		enc(0, 0, c[63], 2)
	} else {
		for i := range 10 {
			x, y, z := c[i], c[i+10], c[i+20]
			switch i % 3 {
			case 0:
				enc(x, y, z, 4)
			case 1:
				enc(z, x, y, 4)
			default:
				enc(y, z, x, 4)
			}
		}
		enc(0, c[31], c[30], 3)
	}
	return out.String(), nil
}

func repeatTo(b []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out
}
