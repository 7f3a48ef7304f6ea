package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// Argon2Params are the argon2id cost parameters for new password hashes (RFC 9106).
//
// The defaults (64 MiB, 1 pass, 1 lane) were chosen by measurement on the 2-core
// development machine: about 60 ms of CPU per hash (2 passes: about 105 ms, 3 passes:
// about 170 ms; see BenchmarkArgon2id). Memory is the cost that hurts GPU and ASIC
// attackers most, so it is kept at RFC 9106's second recommended value and the pass count
// is the knob for slower or faster machines. More lanes than one do not lower the CPU
// cost and only compete with other logins for the cores of a busy server.
//
// A stored hash whose parameters differ from these is re-hashed with them on the user's
// next successful login.
type Argon2Params struct {
	Memory      bytesize.Size `yaml:"memory"`      // memory per hash, whole KiB (default 64MiB)
	Iterations  uint32        `yaml:"iterations"`  // passes over the memory (default 1)
	Parallelism uint8         `yaml:"parallelism"` // lanes (default 1)
}

// DefaultArgon2Params are the parameters used when Argon2Params is zero.
var DefaultArgon2Params = Argon2Params{Memory: 64 * bytesize.MiB, Iterations: 1, Parallelism: 1}

const (
	saltLen = 16 // RFC 9106 §3.1 recommends 16 bytes
	keyLen  = 32
	// Bounds on the parameters of a stored hash, so that a corrupt or hostile entry
	// cannot make one verification allocate gigabytes or run for minutes.
	maxMemory     = bytesize.GiB
	maxIterations = 64
	maxSaltLen    = 64
	maxKeyLen     = 128
	maxBcryptCost = 16 // about 5 s; bcrypt allows 31 (days)
)

func (p Argon2Params) withDefaults() Argon2Params {
	if p.Memory == 0 {
		p.Memory = DefaultArgon2Params.Memory
	}
	if p.Iterations == 0 {
		p.Iterations = DefaultArgon2Params.Iterations
	}
	if p.Parallelism == 0 {
		p.Parallelism = DefaultArgon2Params.Parallelism
	}
	return p
}

// kib is Memory in KiB, argon2's unit (validate checks that it is whole).
func (p Argon2Params) kib() uint32 { return uint32(p.Memory / bytesize.KiB) }

func (p Argon2Params) validate() error {
	switch {
	case p.Memory%bytesize.KiB != 0:
		return fmt.Errorf("argon2: memory %v is not a whole number of KiB", p.Memory)
	case p.Memory < 8*bytesize.KiB*bytesize.Size(p.Parallelism):
		return fmt.Errorf("argon2: memory %v below 8KiB per lane", p.Memory)
	case p.Memory > maxMemory:
		return fmt.Errorf("argon2: memory %v above %v", p.Memory, maxMemory)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Errorf("argon2: iterations %d outside 1..%d", p.Iterations, maxIterations)
	case p.Parallelism < 1:
		return fmt.Errorf("argon2: parallelism must be at least 1")
	}
	return nil
}

var b64 = base64.RawStdEncoding

// HashPassword returns the argon2id hash of password in the PHC string format
// ($argon2id$v=19$m=65536,t=1,p=1$SALT$HASH, unpadded standard base64) with a random
// 16-byte salt. Zero fields of p take the defaults.
func HashPassword(password string, p Argon2Params) (string, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.kib(), p.Parallelism, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.kib(), p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// phc is a parsed argon2 hash.
type phc struct {
	variant string // argon2id or argon2i
	params  Argon2Params
	salt    []byte
	key     []byte
}

// errBadHash is returned for a stored hash that cannot be parsed.
var errBadHash = errors.New("auth: unsupported or malformed password hash")

// parseArgon2 parses $argon2id$v=19$m=..,t=..,p=..$salt$hash (an optional Dovecot scheme
// prefix {ARGON2ID} or {ARGON2I} is removed by the caller).
func parseArgon2(s string) (*phc, error) {
	parts := strings.Split(s, "$")
	// "", variant, v=19, params, salt, hash
	if len(parts) != 6 || parts[0] != "" {
		return nil, errBadHash
	}
	h := &phc{variant: parts[1]}
	if h.variant != "argon2id" && h.variant != "argon2i" {
		return nil, errBadHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, fmt.Errorf("%w: argon2 version %q (want v=19)", errBadHash, parts[2])
	}
	seen := 0
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errBadHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, errBadHash
		}
		switch k {
		case "m":
			h.params.Memory, seen = bytesize.Size(n)*bytesize.KiB, seen|1
		case "t":
			h.params.Iterations, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return nil, errBadHash
			}
			h.params.Parallelism, seen = uint8(n), seen|4
		default:
			return nil, errBadHash
		}
	}
	if seen != 7 {
		return nil, errBadHash
	}
	if err := h.params.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadHash, err)
	}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > maxSaltLen {
		return nil, errBadHash
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > maxKeyLen {
		return nil, errBadHash
	}
	return h, nil
}

// schemes: a stored hash is argon2 in PHC form (optionally with Dovecot's {ARGON2ID} or
// {ARGON2I} prefix) or bcrypt ($2a$/$2b$/$2y$, optionally {BLF-CRYPT}), the latter two so
// that users can be imported from Dovecot passwd-files. The older schemes of Dovecot and
// OpenLDAP ({SSHA}, {SHA512-CRYPT}...) are in hash_legacy.go.
func stripScheme(encoded string) string {
	if strings.HasPrefix(encoded, "{") {
		if i := strings.IndexByte(encoded, '}'); i > 0 {
			switch strings.ToUpper(encoded[1:i]) {
			case "ARGON2ID", "ARGON2I", "BLF-CRYPT":
				return encoded[i+1:]
			}
		}
	}
	return encoded
}

// CheckHash reports whether encoded is a password hash portcullis can verify.
func CheckHash(encoded string) error {
	if scheme, rest, ok := legacyScheme(encoded); ok {
		return checkLegacy(scheme, rest)
	}
	s := stripScheme(encoded)
	if strings.HasPrefix(s, "$2") {
		return checkBcrypt(s)
	}
	_, err := parseArgon2(s)
	return err
}

func checkBcrypt(s string) error {
	c, err := bcrypt.Cost([]byte(s))
	if err != nil {
		return fmt.Errorf("%w: bcrypt: %v", errBadHash, err)
	}
	if c > maxBcryptCost {
		return fmt.Errorf("%w: bcrypt cost %d above %d", errBadHash, c, maxBcryptCost)
	}
	return nil
}

// VerifyPassword compares password with the stored hash in constant time (with respect
// to the password and the hash). rehash reports that the password matched but the hash
// is not argon2id with parameters p (after defaults), so it should be replaced.
func VerifyPassword(encoded, password string, p Argon2Params) (ok, rehash bool, err error) {
	if scheme, rest, isLegacy := legacyScheme(encoded); isLegacy {
		ok, err := verifyLegacy(scheme, rest, password)
		return ok, ok, err
	}
	s := stripScheme(encoded)
	if strings.HasPrefix(s, "$2") {
		if err := checkBcrypt(s); err != nil {
			return false, false, err
		}
		err := bcrypt.CompareHashAndPassword([]byte(s), []byte(password))
		switch {
		case err == nil:
			return true, true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
			return false, false, nil
		default:
			return false, false, fmt.Errorf("%w: bcrypt: %v", errBadHash, err)
		}
	}
	h, err := parseArgon2(s)
	if err != nil {
		return false, false, err
	}
	var key []byte
	if h.variant == "argon2id" {
		key = argon2.IDKey([]byte(password), h.salt, h.params.Iterations, h.params.kib(), h.params.Parallelism, uint32(len(h.key)))
	} else {
		key = argon2.Key([]byte(password), h.salt, h.params.Iterations, h.params.kib(), h.params.Parallelism, uint32(len(h.key)))
	}
	if subtle.ConstantTimeCompare(key, h.key) != 1 {
		return false, false, nil
	}
	want := p.withDefaults()
	rehash = h.variant != "argon2id" || h.params != want || len(h.key) != keyLen || len(h.salt) < saltLen || s != encoded
	return true, rehash, nil
}
