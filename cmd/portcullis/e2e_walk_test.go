package main

// The attachment filter must not fail open at the limits of the MIME walk (issue 15,
// items 1 and 5): against the real binary with the default rules, an .exe that a plain
// message would carry to a 554 is refused too when it hides behind each limit of the
// walk, with the limit named in the reply; decompression bombs up to 10 GiB and a
// 10-deep nest are refused; an ordinary message with attachments is still delivered.

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/config"
	"github.com/portcullis-mail/portcullis/content/contenttest"
	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
)

func TestE2EWalkLimits(t *testing.T) {
	dir := t.TempDir()
	// The 10 GiB gzip bomb is 10 MiB, 14 MiB in base64.
	cfg := e2eConfig(t, dir, dnstest.New(t), string(config.DefaultRules()), "  max_message_size: 20MiB\n")
	srv := startServer(t, cfg, "mx")
	defer srv.kill()

	const from, to = "sender@client.example.net", "postmaster@example.test"
	exe := contenttest.Entry{Name: "invoice.exe", Data: contenttest.PE()}
	one := func(name, typ string, data []byte) string {
		return contenttest.Message(from, to, name, "", contenttest.Attachment{Name: name, Type: typ, Data: data})
	}
	cases := []struct {
		name  string
		msg   func() string
		code  int
		reply string // in the reply
	}{
		{"plain exe", func() string { return one("invoice.exe", "application/octet-stream", exe.Data) },
			554, "executable or disguised attachments are not accepted (invoice.exe)"},
		{"exe behind 270 KiB of header", func() string { return contenttest.PaddedHeader(from, to, 270<<10) },
			552, "5.3.4 Message header exceeds the limit of 102400 bytes (max_header_size)"},
		{"exe behind 270 KiB of part header", func() string { return contenttest.PaddedPartHeader(from, to, 270<<10) },
			554, "message too complex to scan (max_header_size)"},
		{"exe after 501 parts", func() string { return contenttest.ManyParts(from, to, 501) },
			554, "message too complex to scan (max_parts)"},
		{"exe below 17 multipart levels", func() string { return contenttest.DeepParts(from, to, 17) },
			554, "message too complex to scan (max_depth)"},
		{"exe after 1000 zip entries", func() string { return one("files.zip", "application/zip", contenttest.ManyEntries(1000, exe)) },
			554, "message too complex to scan (max_archive_entries)"},
		{"exe in the 4th zip level", func() string { return one("levels.zip", "application/zip", contenttest.ZipLevels(4, exe)) },
			554, "message too complex to scan (max_archive_depth)"},
		{"exe after 40 MiB of padding in a tar.gz", func() string {
			return one("backup.tar.gz", "application/gzip",
				contenttest.TarGz(contenttest.Entry{Name: "backup/pad.txt", Data: contenttest.LowEntropy(40<<20, 7)}, exe))
		}, 554, "message too complex to scan (max_uncompressed_size)"},
		{"1 GiB gzip bomb", func() string {
			return one("logs.gz", "application/gzip", contenttest.GzipZeros("logs", contenttest.GiB))
		},
			554, "archive expands too much (max_ratio)"},
		{"10 GiB gzip bomb", func() string {
			return one("logs.gz", "application/gzip", contenttest.GzipZeros("logs", 10*contenttest.GiB))
		}, 554, "archive expands too much (max_ratio)"},
		{"10-deep 42.zip-style nest", func() string {
			return one("42.zip", "application/zip", contenttest.Nest(10, 16, contenttest.ZipZeros("0.dat", 4*contenttest.GiB)))
		}, 554, "archive expands too much (max_ratio)"},
		{"exe 10 zips deep", func() string { return one("deep.zip", "application/zip", contenttest.ZipLevels(10, exe)) },
			554, "message too complex to scan (max_archive_depth)"},
		{"ordinary attachments", func() string {
			return contenttest.Message(from, to, "quarterly report", "",
				contenttest.Attachment{Name: "report.pdf", Type: "application/pdf", Data: []byte("%PDF-1.4\n% the report\n")},
				contenttest.Attachment{Name: "data.zip", Type: "application/zip", Data: contenttest.Zip(
					contenttest.Entry{Name: "data.csv", Data: contenttest.LowEntropy(2<<20, 3)},
					contenttest.Entry{Name: "notes.txt", Data: []byte("see data.csv\n")})},
				contenttest.Attachment{Name: "src.tar.gz", Type: "application/gzip", Data: contenttest.TarGz(
					contenttest.Entry{Name: "src/main.go", Data: []byte("package main\n\nfunc main() {}\n")})})
		}, 250, ""},
	}
	start := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := c.msg()
			t0 := time.Now()
			conn := e2eDial(t, srv.addrs["mx"], "127.0.0.1", "client.example.net")
			defer conn.Close()
			stage, err := e2eSend(conn, from, to, msg)
			t.Logf("%d KiB: %s in %v", len(msg)>>10, smtpMessage(err), time.Since(t0).Round(time.Millisecond))
			require.Equal(t, c.code, smtpCode(err), "stage %q: %v", stage, err)
			if c.code != 250 {
				require.Equal(t, "data", stage)
				require.Contains(t, smtpMessage(err), c.reply)
			}
		})
	}
	got := waitDelivered(t, dir, 1)
	require.Len(t, got, 1, "only the ordinary message is delivered")
	require.Contains(t, got[0], "Subject: quarterly report")
	require.NotContains(t, strings.ToLower(got[0]), "x-portcullis-unchecked")
	t.Logf("%d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))
}
