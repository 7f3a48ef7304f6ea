package content

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// clamavTestFiles locates the harmless test files of the clamav-testfiles package: real
// PE files (plain and packed), archives of every kind and mail carrying them.
func clamavTestFiles(t *testing.T) string {
	dir := "/usr/share/clamav-testfiles"
	if _, err := os.Stat(filepath.Join(dir, "clam.exe")); err != nil {
		testenv.Unavailable(t, "clamav-testfiles: %v (scripts/install-test-deps.sh installs it)", err)
	}
	return dir
}

// TestClamAVTestFiles attaches every ClamAV test file to a message (or walks it when it
// is a message) and checks what is detected: every PE whatever the packer, the
// executable inside zip, tar.gz, nested tgz and bzip2 files, in base64 and uuencoded mail.
func TestClamAVTestFiles(t *testing.T) {
	dir := clamavTestFiles(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	wantExe := map[string]bool{
		"clam.zip": true, "clam.tar.gz": true, "clam.exe.bz2": true,
		"clam.bz2.zip": true, "clam.exe.mbox.base64": true, "clam.exe.mbox.uu": true, "clam.mail": true,
	}
	wantType := map[string]string{
		"clam.7z": "application/x-7z-compressed", "clam.cab": "application/vnd.ms-cab-compressed",
		"clam.pdf": "application/pdf", "clam.ole.doc": "application/x-ole-storage", "clam.ppt": "application/x-ole-storage",
		"clam.exe.rtf": "application/rtf", "clam.exe.html": "text/html",
	}
	seen := 0
	for _, f := range files {
		base := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m *Message
		if strings.Contains(base, "mbox") || base == "clam.mail" {
			m, err = WalkBytes(data, Limits{})
		} else {
			m, err = WalkBytes(mixed("test file", [2]string{"Content-Type: application/octet-stream; name=\"" + base + "\"\r\n", b64lines(data)}), Limits{})
		}
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		exe := false
		var outer *Attachment
		for _, a := range m.Attachments {
			exe = exe || (a.Executable && a.ExecKind == "pe")
			if a.InArchive == "" && outer == nil {
				outer = a
			}
		}
		switch {
		case base == "clam_cache_emax.tgz":
			// Archives nested past max_archive_depth: the limit must show.
			seen++
			if !exe && (!m.Truncated || !strings.Contains(describe(m), "archive_limit")) {
				t.Errorf("%s: the nesting limit is not reported: %s", base, describe(m))
			}
			deep, _ := WalkBytes(mixed("deep", [2]string{"Content-Type: application/gzip; name=\"" + base + "\"\r\n", b64lines(data)}),
				Limits{MaxArchiveDepth: 20})
			found := false
			for _, a := range deep.Attachments {
				found = found || a.ExecKind == "pe"
			}
			if !found {
				t.Errorf("%s: no executable with max_archive_depth 20: %s", base, describe(deep))
			}
		case strings.HasSuffix(base, ".exe") || wantExe[base]:
			seen++
			if !exe {
				t.Errorf("%s: no PE executable found in %s", base, describe(m))
			}
		case wantType[base] != "":
			seen++
			if outer == nil || outer.DetectedType != wantType[base] {
				t.Errorf("%s: detected %s, want %s", base, describe(m), wantType[base])
			}
		}
	}
	if seen < 25 {
		t.Errorf("only %d test files checked", seen)
	}
}

func describe(m *Message) string {
	var b strings.Builder
	for _, a := range m.Attachments {
		b.WriteString("[" + a.InArchive + "/" + a.Name + " " + a.DetectedType + " " + a.ExecKind + " " + strings.Join(a.Reasons, ",") + "] ")
	}
	return b.String()
}
