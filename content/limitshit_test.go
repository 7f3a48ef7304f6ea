package content

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/content/contenttest"
	"github.com/portcullis-mail/portcullis/policy"
)

const (
	from = "a@sender.example"
	to   = "b@example.test"
)

func attach(name, typ string, data []byte) string {
	return contenttest.Message(from, to, name, "", contenttest.Attachment{Name: name, Type: typ, Data: data})
}

// TestLimitsHit drives the walk to each of its limits with invoice.exe behind it, the
// attacks of issue 15: every one must name its limit, and all but the text and URL
// limits make the walk truncated, which the policy reports as content.truncated, never
// content.clean.
func TestLimitsHit(t *testing.T) {
	pe := contenttest.PE()
	exe := contenttest.Entry{Name: "invoice.exe", Data: pe}
	var urls strings.Builder
	for i := 0; i < 600; i++ {
		urls.WriteString("http://h" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + ".example/" + strings.Repeat("p", i) + " ")
	}
	cases := []struct {
		name      string
		msg       string
		lim       Limits
		want      []string
		truncated bool
	}{
		{"exe after 501 parts", contenttest.ManyParts(from, to, 501), Limits{}, []string{LimitParts}, true},
		{"exe below 17 multipart levels", contenttest.DeepParts(from, to, 17), Limits{}, []string{LimitDepth}, true},
		{"exe behind 270 KiB of part header", contenttest.PaddedPartHeader(from, to, 270<<10), Limits{}, []string{LimitHeaderSize}, true},
		{"exe behind 270 KiB of message header", contenttest.PaddedHeader(from, to, 270<<10), Limits{}, []string{LimitHeaderSize}, true},
		{"exe after 1000 zip entries", attach("files.zip", "application/zip", contenttest.ManyEntries(1000, exe)), Limits{}, []string{LimitArchiveEntries}, true},
		{"exe in the 4th zip level", attach("levels.zip", "application/zip", contenttest.ZipLevels(4, exe)), Limits{}, []string{LimitArchiveDepth}, true},
		// The e2e test sends the 40 MiB of the attack; here a smaller budget is overrun.
		{"exe after low-entropy padding in a tar.gz", attach("backup.tar.gz", "application/gzip",
			contenttest.TarGz(contenttest.Entry{Name: "pad.txt", Data: contenttest.LowEntropy(5<<20, 1)}, exe)),
			Limits{MaxUncompressedSize: 4 << 20}, []string{LimitUncompressedSize}, true},
		{"exe after 8 MiB of zeros in a tar.gz", attach("backup.tar.gz", "application/gzip",
			contenttest.TarGz(contenttest.Entry{Name: "pad.bin", Data: make([]byte, 8<<20)}, exe)),
			Limits{}, []string{LimitRatio}, true},
		{"decoded bytes", attach("big.bin", "application/octet-stream", make([]byte, 8000)), Limits{MaxDecodedSize: 4000}, []string{LimitDecodedSize}, true},
		{"text", contenttest.Message(from, to, "text", "", contenttest.Attachment{Name: "a.txt", Type: "text/plain", Data: []byte("x")}) +
			"", Limits{MaxTextSize: 10}, []string{LimitTextSize}, false},
		{"urls", "Subject: urls\r\n\r\n" + urls.String(), Limits{}, []string{LimitURLs}, false},
	}
	p, _ := New(Config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := WalkBytes([]byte(c.msg), c.lim)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.LimitsHit, c.want) || m.Truncated != c.truncated {
				t.Fatalf("limits hit %v truncated %v, want %v %v (errors %v)", m.LimitsHit, m.Truncated, c.want, c.truncated, m.Errors)
			}
			f := Facts(m)
			if !slices.Equal(f["limits_hit"].([]string), c.want) || f["truncated"] != c.truncated {
				t.Fatalf("facts: %v %v", f["limits_hit"], f["truncated"])
			}
			if c.lim != (Limits{}) || !c.truncated {
				return
			}
			tx := policy.NewTransaction(policy.Conn{})
			tx.Message = policy.NewMessage([]byte(c.msg), time.Now())
			r := p.CheckData(context.Background(), tx)
			if r.Status == policy.StatusPass || r.Reason == "content.clean" {
				t.Fatalf("a truncated walk is %s %s", r.Status, r.Reason)
			}
		})
	}
}

// TestTooLargeIsTruncated: a message over max_size is a permerror whose facts still say
// truncated by max_size, so that the rule on truncated walks refuses it.
func TestTooLargeIsTruncated(t *testing.T) {
	p, _ := New(Config{Limits: Limits{MaxSize: 1000}})
	tx := policy.NewTransaction(policy.Conn{})
	tx.Message = policy.NewMessage([]byte(contenttest.ManyParts(from, to, 20)), time.Now())
	r := p.CheckData(context.Background(), tx)
	if r.Status != policy.StatusPermError || r.Facts["truncated"] != true || !slices.Equal(r.Facts["limits_hit"].([]string), []string{LimitSize}) {
		t.Fatalf("%s %v %v", r.Status, r.Facts["truncated"], r.Facts["limits_hit"])
	}
	if len(r.Facts) != len(p.DeclareFacts()) {
		t.Fatalf("%d facts, %d declared", len(r.Facts), len(p.DeclareFacts()))
	}
}

// TestUnderTheLimits: the same shapes one step below each limit are walked to the end
// and the executable is found.
func TestUnderTheLimits(t *testing.T) {
	pe := contenttest.PE()
	exe := contenttest.Entry{Name: "invoice.exe", Data: pe}
	for name, msg := range map[string]string{
		"499 entities":        contenttest.ManyParts(from, to, 497), // the top, 497 and the exe
		"15 levels":           contenttest.DeepParts(from, to, 15),
		"250 KiB part header": contenttest.PaddedPartHeader(from, to, 250<<10),
		"999 zip entries":     attach("files.zip", "application/zip", contenttest.ManyEntries(999, exe)),
		"3 zip levels":        attach("levels.zip", "application/zip", contenttest.ZipLevels(3, exe)),
		"3 MiB padded tar.gz": attach("b.tar.gz", "application/gzip", contenttest.TarGz(contenttest.Entry{Name: "pad.txt", Data: contenttest.LowEntropy(3<<20, 2)}, exe)),
	} {
		m, err := WalkBytes([]byte(msg), Limits{MaxUncompressedSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		exe := false
		for _, a := range m.Attachments {
			exe = exe || a.ExecKind == "pe" && a.Name == "invoice.exe"
		}
		if !exe || m.Truncated || len(m.LimitsHit) > 0 {
			t.Errorf("%s: executable %v, truncated %v %v %v", name, exe, m.Truncated, m.LimitsHit, m.Errors)
		}
	}
}

// xz is recognised, not listed (no decoder in the standard library).
func TestXZRecognised(t *testing.T) {
	xz := append([]byte("\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4\x46"), make([]byte, 64)...)
	m, _ := WalkBytes([]byte(attach("a.tar.xz", "application/x-xz", xz)), Limits{})
	if len(m.Attachments) != 1 || m.Attachments[0].DetectedType != "application/x-xz" || m.Attachments[0].TypeMismatch {
		t.Fatalf("%s", describe(m))
	}
}
