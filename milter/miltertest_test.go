package milter_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestMiltertest runs Debian's miltertest (OpenDKIM's packet-level milter driver) with
// the Lua scripts of testdata against the server.
func TestMiltertest(t *testing.T) {
	bin := testenv.Program(t, "miltertest")
	addr, _ := startMilter(t, "127.0.0.1:0")
	host, port, _ := strings.Cut(addr, ":")
	scripts, _ := filepath.Glob("testdata/*.lua")
	if len(scripts) == 0 {
		t.Fatal("no scripts")
	}
	for _, s := range scripts {
		t.Run(strings.TrimSuffix(filepath.Base(s), ".lua"), func(t *testing.T) {
			cmd := exec.Command(bin, "-v", "-s", s)
			cmd.Env = append(os.Environ(), "MILTER_SOCKET=inet:"+port+"@"+host)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("miltertest %s: %v\n%s", s, err, out)
			}
		})
	}
}
