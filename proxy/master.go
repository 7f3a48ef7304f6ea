package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/directory"
)

// minMasterSecret is the shortest master secret accepted: a random secret that long
// needs no slow password hash, so a back-end checks a proxy's login in microseconds.
const minMasterSecret = 32

// ReadMasterSecret reads the master secret from path (surrounding white space dropped).
func ReadMasterSecret(path string) (string, error) {
	if path == "" {
		return "", errors.New("proxy: master_user needs master_secret_file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("proxy: master_secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < minMasterSecret {
		return "", fmt.Errorf("proxy: master_secret_file %s: the secret has %d characters, fewer than %d", path, len(secret), minMasterSecret)
	}
	return secret, nil
}

// MasterAuth is a back-end's authenticator when a proxy logs in on users' behalf: the
// users' own logins go to Authenticator, and AuthenticateAs takes the proxy's master
// credential for any user the directory knows (imapd, pop3d and managesieve ask it
// only on connections from their trusted proxies).
type MasterAuth struct {
	Authenticator
	user   string
	secret [sha256.Size]byte
	dir    Directory
}

// NewMasterAuth returns the back-end's authenticator for master user with the secret
// in secretFile; users are looked up in dir.
func NewMasterAuth(users Authenticator, dir Directory, master, secretFile string) (*MasterAuth, error) {
	secret, err := ReadMasterSecret(secretFile)
	if err != nil {
		return nil, err
	}
	if master == "" || users == nil || dir == nil {
		return nil, errors.New("proxy: a master user, an authenticator and a directory are required")
	}
	return &MasterAuth{Authenticator: users, user: master, secret: sha256.Sum256([]byte(secret)), dir: dir}, nil
}

// errMaster is a refused master login (not temporary).
var errMaster = errors.New("proxy: master login refused")

// dirUnavailable is a directory failure, answered as a temporary one.
type dirUnavailable struct{ err error }

func (e dirUnavailable) Error() string   { return "proxy: directory: " + e.err.Error() }
func (e dirUnavailable) Unwrap() error   { return e.err }
func (e dirUnavailable) Temporary() bool { return true }

// AuthenticateAs checks the master credential (constant time, over hashes so that the
// length does not show) and returns the user's canonical address from the directory.
func (m *MasterAuth) AuthenticateAs(ctx context.Context, user, master, password string, _ netip.Addr) (string, error) {
	got := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(got[:], m.secret[:]) != 1 || master != m.user {
		return "", errMaster
	}
	u, err := m.dir.Lookup(ctx, user)
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return "", fmt.Errorf("%w: %s: %w", errMaster, user, err)
		}
		return "", dirUnavailable{err}
	}
	return u.Address, nil
}
