package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/auth"
	"github.com/portcullis-mail/portcullis/auth/ldaptest"
	"github.com/portcullis-mail/portcullis/directory"
	"github.com/portcullis-mail/portcullis/internal/pgtest"
)

// runIn runs the CLI in-process with stdin.
func runIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// userConfig writes a config of data dir and extra keys; it returns its path.
func userConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf("data_dir: %s\n%s", filepath.Join(dir, "data"), extra)), 0o644))
	return path
}

// TestUserCommandsPostgres drives portcullis user against the shared directory in a real
// PostgreSQL and checks each change there: the hash verifies through auth as the proxy
// verifies it, the mail host, quota and aliases are what Lookup returns.
func TestUserCommandsPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	cfg := userConfig(t, fmt.Sprintf("directory: { postgres: %q }\n", dsn))
	user := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runIn(t, stdin, append([]string{"user", "--config", cfg}, args...)...)
		require.NoError(t, err, out)
		return out
	}
	user("first password 1\n", "add", "Kim@Example.TEST", "--host", "store1", "--quota", "2MiB", "--password-stdin")
	user("other password 2\n", "add", "lee@example.test", "--host", "store2", "--password-stdin")
	user("", "alias", "add", "kim@example.test", "sales@example.test")
	_, err := runIn(t, "x long enough 3\n", "user", "--config", cfg, "add", "kim@example.test", "--password-stdin")
	require.ErrorIs(t, err, directory.ErrExists)
	_, err = runIn(t, "", "user", "--config", cfg, "alias", "add", "lee@example.test", "sales@example.test")
	require.ErrorIs(t, err, directory.ErrExists)

	pg, err := directory.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer pg.Close()
	u, err := pg.Lookup(ctx, "sales@example.test")
	require.NoError(t, err)
	require.Equal(t, "kim@example.test", u.Address)
	require.Equal(t, "store1", u.MailHost)
	require.Equal(t, int64(2<<20), u.Quota)
	require.Equal(t, []string{"sales@example.test"}, u.Aliases)

	db, err := auth.OpenDB(filepath.Join(t.TempDir(), "users.db"))
	require.NoError(t, err)
	defer db.Close()
	verify := func(addr, pw string) error {
		_, err := db.WithHashes(directory.Hashes(pg)).Authenticate(ctx, addr, pw, netip.Addr{})
		return err
	}
	require.NoError(t, verify("kim@example.test", "first password 1"))
	user("new password 11\n", "passwd", "kim@example.test", "--password-stdin")
	require.ErrorIs(t, verify("kim@example.test", "first password 1"), auth.ErrInvalid)
	require.NoError(t, verify("kim@example.test", "new password 11"))

	user("", "host", "kim@example.test", "store3")
	user("", "quota", "kim@example.test", "0")
	out := user("", "show", "sales@example.test")
	require.Contains(t, out, "mail host: store3")
	require.Contains(t, out, "quota:     default")
	out = user("", "list")
	require.Regexp(t, `kim@example.test\s+store3\s+-\s+default\s+sales@example.test`, out)
	require.Regexp(t, `lee@example.test\s+store2\s+-\s+default\s+-`, out)

	user("", "alias", "del", "sales@example.test")
	_, err = pg.Lookup(ctx, "sales@example.test")
	require.ErrorIs(t, err, directory.ErrNotFound)
	user("", "del", "lee@example.test")
	_, err = pg.Lookup(ctx, "lee@example.test")
	require.ErrorIs(t, err, directory.ErrNotFound)
	_, err = runIn(t, "", "user", "--config", cfg, "host", "lee@example.test", "store1")
	require.ErrorIs(t, err, directory.ErrNotFound)
}

// TestUserCommandsLocalAndLDAP: the local directory refuses what only the shared one has
// (mail hosts, aliases), and LDAP refuses every change but shows what it holds.
func TestUserCommandsLocalAndLDAP(t *testing.T) {
	local := userConfig(t, "")
	_, err := runIn(t, "a password 123\n", "user", "--config", local, "add", "kim@example.test", "--host", "store1", "--password-stdin")
	require.ErrorContains(t, err, "directory.postgres")
	_, err = runIn(t, "", "user", "--config", local, "alias", "add", "kim@example.test", "k@example.test")
	require.ErrorContains(t, err, "routing.aliases")
	out, err := runIn(t, "a password 123\n", "user", "--config", local, "add", "kim@example.test", "--password-stdin")
	require.NoError(t, err, out)
	out, err = runIn(t, "", "user", "--config", local, "show", "kim@example.test")
	require.NoError(t, err, out)
	require.Contains(t, out, "mail host: (this node)")

	srv := ldaptest.Start(t, ldaptest.User{UID: "gina", Mail: "gina@example.test", Password: "pw", MailHost: "store2",
		MailAliases: []string{"g@example.test"}})
	ldapCfg := userConfig(t, fmt.Sprintf(`auth:
  ldap: { url: %q, base_dn: %q, bind_dn: %q, bind_password: %q }
directory: { ldap: {} }
`, srv.URL, ldaptest.BaseDN, srv.BindDN, srv.BindPassword))
	out, err = runIn(t, "", "user", "--config", ldapCfg, "show", "gina@example.test")
	require.NoError(t, err, out)
	require.Contains(t, out, "address:   gina@example.test")
	require.Contains(t, out, "mail host: store2")
	for _, args := range [][]string{
		{"add", "x@example.test", "--password-stdin"},
		{"passwd", "gina@example.test", "--password-stdin"},
		{"del", "gina@example.test"},
		{"host", "gina@example.test", "store1"},
		{"alias", "add", "gina@example.test", "gg@example.test"},
	} {
		_, err := runIn(t, "a password 123\n", append([]string{"user", "--config", ldapCfg}, args...)...)
		require.True(t, errors.Is(err, errLDAPReadOnly), "%v: %v", args, err)
	}
}
