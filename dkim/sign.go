package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"golang.org/x/net/idna"
)

// Key algorithms GenerateKey makes.
const (
	AlgoEd25519 = "ed25519"
	AlgoRSA     = "rsa" // 2048 bits
)

// SignerConfig configures a Signer.
type SignerConfig struct {
	// Dir holds the keys, one file per domain and selector: DOMAIN.SELECTOR.key, a PEM
	// PKCS#8 private key (RSA or Ed25519). The server uses DATA/dkim.
	Dir string `yaml:"dir"`
	// Headers are the header fields to sign (default: RFC 6376 §5.4.1's recommended set).
	Headers []string `yaml:"headers"`
	// Expiration, when set, adds x= this long after signing.
	Expiration time.Duration `yaml:"expiration"`
}

// DefaultSignedHeaders are the fields signed by default, From first (RFC 6376 §5.4.1).
var DefaultSignedHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From",
	"Resent-To", "Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help",
	"List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	"Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// ErrNoKey means the Signer has no key for the domain.
var ErrNoKey = errors.New("dkim: no signing key")

// Signer signs outgoing mail (authenticated submission) with the key of the From:
// domain. Keys are read from Dir on first use and kept; Reload forgets them.
type Signer struct {
	cfg  SignerConfig
	mu   sync.Mutex
	keys map[string]*signKey // by domain; nil value = looked, none
}

type signKey struct {
	selector string
	signer   crypto.Signer
}

// NewSigner returns a signer. It does no I/O.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("dkim: signer needs a key directory")
	}
	if cfg.Headers == nil {
		cfg.Headers = DefaultSignedHeaders
	}
	hasFrom := false
	for _, h := range cfg.Headers {
		hasFrom = hasFrom || strings.EqualFold(h, "From")
	}
	if !hasFrom {
		return nil, errors.New("dkim: the signed headers must include From (RFC 6376 §5.4)")
	}
	return &Signer{cfg: cfg, keys: make(map[string]*signKey)}, nil
}

// Reload forgets the keys read so far (after keygen, or on SIGHUP).
func (s *Signer) Reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = make(map[string]*signKey)
}

// key returns the key for domain: the file DOMAIN.SELECTOR.key in Dir, the last selector
// in lexical order when there are several (so that date-named selectors roll over).
func (s *Signer) key(domain string) (*signKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[domain]; ok {
		if k == nil {
			return nil, fmt.Errorf("%w for %s", ErrNoKey, domain)
		}
		return k, nil
	}
	if err := checkDomainLabel(domain); err != nil {
		return nil, err
	}
	matches, err := filepath.Glob(filepath.Join(s.cfg.Dir, globEscape(domain)+".*.key"))
	if err != nil {
		return nil, fmt.Errorf("dkim: find key of %s: %w", domain, err)
	}
	sort.Strings(matches)
	if len(matches) == 0 {
		s.keys[domain] = nil
		return nil, fmt.Errorf("%w for %s in %s", ErrNoKey, domain, s.cfg.Dir)
	}
	path := matches[len(matches)-1]
	selector := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), domain+"."), ".key")
	signer, err := readKey(path)
	if err != nil {
		return nil, err
	}
	k := &signKey{selector: selector, signer: signer}
	s.keys[domain] = k
	return k, nil
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

func checkDomainLabel(domain string) error {
	if domain == "" || strings.ContainsAny(domain, "/\\") || strings.HasPrefix(domain, ".") || len(domain) > 253 {
		return fmt.Errorf("dkim: invalid signing domain %q", domain)
	}
	return nil
}

func readKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: read key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("dkim: key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: key %s: unsupported PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: key %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim: key %s: RSA key of %d bits is too weak (RFC 8301 §3.2)", path, k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("dkim: key %s: unsupported key type %T", path, key)
}

// Sign signs msg (header and body) for domain and returns the DKIM-Signature header
// field to prepend, "DKIM-Signature: ...\r\n". It returns an error matching ErrNoKey
// when there is no key for domain.
func (s *Signer) Sign(domain string, msg io.Reader) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	k, err := s.key(domain)
	if err != nil {
		return "", err
	}
	opts := &dkim.SignOptions{
		Domain:                 domain,
		Selector:               k.selector,
		Signer:                 k.signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             s.cfg.Headers,
	}
	if s.cfg.Expiration > 0 {
		opts.Expiration = time.Now().Add(s.cfg.Expiration)
	}
	signer, err := dkim.NewSigner(opts)
	if err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	if _, err := io.Copy(signer, msg); err != nil {
		signer.Close()
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	if err := signer.Close(); err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	return signer.Signature(), nil
}

// SignMessage signs msg for the domain of its From: header (or, when there is no key
// for it, for its organizational domain) and returns the signed message.
func (s *Signer) SignMessage(msg []byte) ([]byte, error) {
	h, err := readHeader(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("dkim: read header: %w", err)
	}
	from := ""
	for _, f := range h {
		if f.Is("From") {
			from = f.Value()
			break
		}
	}
	domain := FromDomain(from)
	if domain == "" {
		return nil, fmt.Errorf("dkim: no From: domain to sign for in %q", from)
	}
	sig, err := s.Sign(domain, bytes.NewReader(msg))
	if errors.Is(err, ErrNoKey) {
		if org := OrgDomain(domain); org != domain {
			sig, err = s.Sign(org, bytes.NewReader(msg))
		}
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(sig), msg...), nil
}

// GenerateKey creates a key for domain and selector in dir (DOMAIN.SELECTOR.key, mode
// 0600, never overwriting) and returns the DNS name and TXT record value to publish:
// "SELECTOR._domainkey.DOMAIN" and "v=DKIM1; k=ed25519; p=...". algo is AlgoEd25519
// (RFC 8463) or AlgoRSA (2048 bits).
func GenerateKey(dir, domain, selector, algo string) (name, txt string, err error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if a, err := idna.Lookup.ToASCII(domain); err != nil || !strings.Contains(a, ".") {
		return "", "", fmt.Errorf("dkim: invalid domain %q", domain)
	}
	if selector == "" || strings.ContainsAny(selector, "/\\ ") || strings.HasPrefix(selector, ".") {
		return "", "", fmt.Errorf("dkim: invalid selector %q", selector)
	}
	var (
		priv crypto.Signer
		k    string
	)
	switch algo {
	case AlgoEd25519, "":
		_, p, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", "", err
		}
		priv, k = p, "ed25519"
	case AlgoRSA, "rsa2048":
		p, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", "", err
		}
		priv, k = p, "rsa"
	default:
		return "", "", fmt.Errorf("dkim: unsupported algorithm %q (want ed25519 or rsa)", algo)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("dkim: encode key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("dkim: key directory: %w", err)
	}
	path := filepath.Join(dir, domain+"."+selector+".key")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("dkim: create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return "", "", fmt.Errorf("dkim: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", "", fmt.Errorf("dkim: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("dkim: write %s: %w", path, err)
	}
	var pub []byte
	switch p := priv.Public().(type) {
	case ed25519.PublicKey:
		pub = p // RFC 8463 §4.2: the raw 32-byte key
	default:
		if pub, err = x509.MarshalPKIXPublicKey(p); err != nil {
			return "", "", err
		}
	}
	return selector + "._domainkey." + domain, "v=DKIM1; k=" + k + "; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

// maxCharString is the length limit of a DNS character-string (RFC 1035 §3.3).
const maxCharString = 255

// ZoneRecord returns the zone-file record that publishes txt, a DKIM key record such as
// GenerateKey returns, as the TXT record of name. A DNS character-string holds at most
// 255 bytes and a 2048-bit RSA record is about 410, so a longer value is split, as
// opendkim-genkey does, into quoted strings of at most 255 bytes (the tags, then the key)
// within parentheses; verifiers concatenate them (RFC 6376 §3.6.2.2):
//
//	s._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; "
//		"p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA..."
//		"...IDAQAB" )
//
// A value of at most 255 bytes stays one quoted string on one line.
func ZoneRecord(name, txt string) string {
	rr := strings.TrimSuffix(name, ".") + ". IN TXT "
	if len(txt) <= maxCharString {
		return rr + quoteTXT(txt)
	}
	head, key := "", txt
	if i := strings.Index(txt, "; p="); i >= 0 {
		head, key = txt[:i+2], txt[i+2:]
	}
	var parts []string
	for _, s := range []string{head, key} {
		for len(s) > 0 {
			n := min(len(s), maxCharString)
			parts = append(parts, quoteTXT(s[:n]))
			s = s[n:]
		}
	}
	return rr + "( " + strings.Join(parts, "\n\t") + " )"
}

// quoteTXT quotes s as a zone-file character-string.
func quoteTXT(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// FromDomain returns the domain of the (first) address in a From: header value, lower
// case; "" when there is none.
func FromDomain(from string) string {
	if list, err := mail.ParseAddressList(from); err == nil && len(list) > 0 {
		if at := strings.LastIndexByte(list[0].Address, '@'); at >= 0 {
			return strings.ToLower(strings.TrimSuffix(list[0].Address[at+1:], "."))
		}
	}
	// A value net/mail refuses (an unknown charset in an encoded word, a sloppy
	// mailer): find the address by hand.
	addr := from
	if i := strings.LastIndexByte(addr, '<'); i >= 0 {
		addr = addr[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	} else if i := strings.IndexByte(addr, ','); i >= 0 {
		addr = addr[:i]
	}
	// Drop a trailing comment such as "user@example.com (User)".
	if i := strings.IndexByte(addr, '('); i >= 0 {
		addr = addr[:i]
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d := strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(addr[at+1:]), ".")))
	if d == "" || strings.ContainsAny(d, " \t<>@,;\"[]") {
		return ""
	}
	return d
}
