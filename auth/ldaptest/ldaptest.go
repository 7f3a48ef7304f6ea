// Package ldaptest starts a real OpenLDAP slapd on loopback for tests: a slapd.conf and
// an mdb database in a temporary directory, a small directory of inetOrgPerson users
// loaded with slapadd, plain LDAP (with StartTLS) and LDAPS listeners using a generated
// certificate, and cleanup that stops the daemon. Tests skip when slapd is not
// installed, and fail when CI=true.
package ldaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// BaseDN is the suffix of the test directory; users live under ou=people.
const BaseDN = "dc=example,dc=test"

// User is an inetOrgPerson entry uid=UID,ou=people,dc=example,dc=test.
type User struct {
	UID      string // RDN value; may contain DN special characters (escaped here)
	Mail     string // mail attribute (optional)
	Password string // stored as {SSHA}
	CN       string // default UID
	// MailHost and MailAliases, when set, make the entry an inetLocalMailRecipient
	// (misc.schema, draft-lachman-laser-ldap-mail-routing): mailHost names the back-end
	// that holds the mailbox, each alias is a mailLocalAddress.
	MailHost    string
	MailAliases []string
}

// Server is a running slapd.
type Server struct {
	URL          string // ldap://127.0.0.1:PORT (StartTLS available)
	LDAPSURL     string // ldaps://127.0.0.1:PORT
	CAFile       string // PEM of the CA that signed the server certificate (CN/SAN 127.0.0.1)
	BindDN       string // a search-only service account
	BindPassword string
	AdminDN      string // the rootdn
	AdminPass    string
	Dir          string

	slapd, conf string
	d           *testenv.Daemon
	ppolicy     bool
}

// Start starts slapd with users under ou=people and a service account
// cn=search,dc=example,dc=test, and stops it when the test ends. Like Active Directory,
// it answers success to unauthenticated binds (a DN with an empty password).
func Start(t testing.TB, users ...User) *Server {
	t.Helper()
	return start(t, false, users)
}

// StartPPolicy is Start with OpenLDAP's ppolicy overlay (draft-behera-ldap-password-
// policy-10) and a default policy that counts failed binds (pwdLockout, pwdMaxFailure
// 3), so that binds write pwdFailureTime into the entry. pwdChangedTime, which the
// overlay sets when a password changes, is hidden from everyone but the service account
// by the rule docs/operations.md gives operators, placed before one that hides it.
func StartPPolicy(t testing.TB, users ...User) *Server {
	t.Helper()
	return start(t, true, users)
}

func start(t testing.TB, ppolicy bool, users []User) *Server {
	t.Helper()
	slapd := testenv.Program(t, "slapd")
	slapadd := filepath.Join(filepath.Dir(slapd), "slapadd")
	if _, err := os.Stat(slapadd); err != nil {
		testenv.Unavailable(t, "ldaptest: slapadd not installed next to slapd (Debian packages slapd, ldap-utils): %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		Dir: dir, BindDN: "cn=search," + BaseDN, BindPassword: "search-secret",
		AdminDN: "cn=admin," + BaseDN, AdminPass: "admin-secret", ppolicy: ppolicy,
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	if err := writeCerts(dir); err != nil {
		t.Fatalf("ldaptest: certificates: %v", err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	s.slapd, s.conf = slapd, conf
	if err := os.WriteFile(conf, []byte(slapdConf(dir, s)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(data, []byte(directoryLDIF(s, users)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapadd, "-f", conf, "-l", data).CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: slapadd: %v\n%s", err, out)
	}

	var lastErr error
	for range 5 { // the free ports may be taken between probe and bind: retry
		s.URL, s.LDAPSURL = "ldap://"+testenv.FreeAddr(t), "ldaps://"+testenv.FreeAddr(t)
		if lastErr = s.start(slapd, conf); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("ldaptest: %v", lastErr)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(slapd, conf string) error {
	cmd := exec.Command(slapd, "-d", "0", "-h", s.URL+"/ "+s.LDAPSURL+"/", "-f", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d, err := testenv.StartDaemon(cmd)
	if err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	s.d = d
	if err := d.WaitReady(15*time.Second, 50*time.Millisecond, s.ping); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// Restart stops slapd and starts it again on the same addresses with the same data, as
// an administrator's restart would (clients' connections are cut).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for range 50 { // the ports may linger briefly after the old process exits
		if err = s.start(s.slapd, s.conf); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ldaptest: restart: %v", err)
}

// SetPasswordOffline stops slapd and sets uid's password in its database with
// slapmodify, as an administrator does on a directory that is down; slapd stays
// stopped (Restart starts it again). slapmodify maintains modifyTimestamp and entryCSN
// as an online change would.
func (s *Server) SetPasswordOffline(t testing.TB, uid, password string) {
	t.Helper()
	s.Stop()
	ldif := ldifValue("dn", DN(uid)) + "changetype: modify\nreplace: userPassword\n" + ldifValue("userPassword", SSHA(password)) + "-\n"
	f := filepath.Join(s.Dir, "modify.ldif")
	if err := os.WriteFile(f, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	slapmodify := filepath.Join(filepath.Dir(s.slapd), "slapmodify")
	if out, err := exec.Command(slapmodify, "-f", s.conf, "-l", f).CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: slapmodify: %v\n%s", err, out)
	}
}

// ping binds as the admin.
func (s *Server) ping() error {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(2 * time.Second)
	return c.Bind(s.AdminDN, s.AdminPass)
}

// Stop terminates slapd and waits for it (at most 10 s, then kills it).
func (s *Server) Stop() {
	if s.d != nil {
		s.d.Stop(syscall.SIGTERM, 10*time.Second)
	}
}

// Pause stops (SIGSTOP) slapd so that the kernel still accepts connections but
// nothing answers, and waits until every thread has stopped; Resume continues it.
func (s *Server) Pause() {
	s.d.Process().Signal(syscall.SIGSTOP)
	pid := strconv.Itoa(s.d.Process().Pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tasks, _ := filepath.Glob("/proc/" + pid + "/task/*/stat")
		stopped := len(tasks) > 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			// The state follows the parenthesised command name: "pid (comm) T ...".
			if i := bytes.LastIndexByte(b, ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
	}
}

// Resume continues a paused slapd.
func (s *Server) Resume() { s.d.Process().Signal(syscall.SIGCONT) }

// DN returns the DN of a user.
func DN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + ",ou=people," + BaseDN }

// SSHA returns the OpenLDAP {SSHA} form of password (SHA-1 over password+salt).
func SSHA(password string) string {
	salt := make([]byte, 8)
	rand.Read(salt)
	h := sha1.Sum(append([]byte(password), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

func slapdConf(dir string, s *Server) string {
	pp, ppACL, ppMod := "", "", ""
	if s.ppolicy {
		ppMod = "moduleload ppolicy\n"
		pp = fmt.Sprintf("overlay ppolicy\nppolicy_default \"cn=default,ou=policies,%s\"\n", BaseDN)
		ppACL = fmt.Sprintf("access to attrs=pwdChangedTime\n\tby dn.exact=\"%s\" read\n\tby * break\naccess to attrs=pwdChangedTime\n\tby * none\n", s.BindDN)
	}
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
%[7]sTLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/cert.pem
TLSCertificateKeyFile %[1]s/key.pem
sizelimit 50
# Accept unauthenticated binds (DN, empty password) as Active Directory does, so that
# tests can show that callers never send one.
allow bind_anon_dn
database mdb
maxsize 16777216
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to attrs=userPassword
	by anonymous auth
	by self write
	by * none
%[5]saccess to *
	by * read
%[6]s`, dir, BaseDN, s.AdminDN, SSHA(s.AdminPass), ppACL, pp, ppMod)
}

// ldifValue encodes an attribute value, base64 when it is not a safe string (RFC 2849).
func ldifValue(attr, v string) string {
	safe := v != "" && v[0] != ' ' && v[0] != ':' && v[0] != '<' && v[len(v)-1] != ' '
	for i := 0; i < len(v) && safe; i++ {
		safe = v[i] >= 0x20 && v[i] < 0x7f
	}
	if safe {
		return attr + ": " + v + "\n"
	}
	return attr + ":: " + base64.StdEncoding.EncodeToString([]byte(v)) + "\n"
}

func directoryLDIF(s *Server, users []User) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n", BaseDN)
	fmt.Fprintf(&b, "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n", BaseDN)
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: search\nuserPassword: %s\n\n", s.BindDN, SSHA(s.BindPassword))
	if s.ppolicy {
		fmt.Fprintf(&b, "dn: ou=policies,%s\nobjectClass: organizationalUnit\nou: policies\n\n", BaseDN)
		fmt.Fprintf(&b, "dn: cn=default,ou=policies,%s\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 3\n\n", BaseDN)
	}
	for _, u := range users {
		cn := u.CN
		if cn == "" {
			cn = u.UID
		}
		b.WriteString(ldifValue("dn", DN(u.UID)))
		b.WriteString("objectClass: inetOrgPerson\n")
		if u.MailHost != "" || len(u.MailAliases) > 0 {
			b.WriteString("objectClass: inetLocalMailRecipient\n")
		}
		if u.MailHost != "" {
			b.WriteString(ldifValue("mailHost", u.MailHost))
		}
		for _, a := range u.MailAliases {
			b.WriteString(ldifValue("mailLocalAddress", a))
		}
		b.WriteString(ldifValue("uid", u.UID))
		b.WriteString(ldifValue("cn", cn))
		b.WriteString(ldifValue("sn", cn))
		if u.Mail != "" {
			b.WriteString(ldifValue("mail", u.Mail))
		}
		if u.Password != "" {
			b.WriteString(ldifValue("userPassword", SSHA(u.Password)))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// writeCerts writes ca.pem, cert.pem and key.pem (server certificate for 127.0.0.1 and
// localhost, signed by a throw-away CA).
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ldaptest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
