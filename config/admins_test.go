package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdmins: the postmaster is the admin unless admins says otherwise (an empty list
// for nobody); the routing maps get them as the owners of the null sender.
func TestAdmins(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	load := func(text string) (*Config, error) {
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
		return Load(path, dir)
	}
	c, err := load("postmaster: pm@example.org\n")
	require.NoError(t, err)
	require.Equal(t, []string{"pm@example.org"}, c.Admins)
	require.Equal(t, c.Admins, c.Routing.NullSenderUsers)

	c, err = load("admins: [a@example.org, b@example.org]\n")
	require.NoError(t, err)
	require.Equal(t, []string{"a@example.org", "b@example.org"}, c.Routing.NullSenderUsers)

	c, err = load("admins: []\n")
	require.NoError(t, err)
	require.Empty(t, c.Routing.NullSenderUsers)

	_, err = load("admins: [root]\n")
	require.ErrorContains(t, err, `admins: "root" is not an address`)
}

// TestRunAsKeys: group needs user, and allow_root has no effect with user.
func TestRunAsKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	for text, want := range map[string]string{
		"user: portcullis\ngroup: mail\n":      "",
		"allow_root: true\n":                   "",
		"group: mail\n":                        "group: it is the group of user, which is empty",
		"user: portcullis\nallow_root: true\n": "allow_root: with user set the server does not keep running as root",
	} {
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
		_, err := Load(path, dir)
		if want == "" {
			require.NoError(t, err, text)
		} else {
			require.ErrorContains(t, err, want, text)
		}
	}
}
