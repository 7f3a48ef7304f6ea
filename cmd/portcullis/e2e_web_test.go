package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/portcullis-mail/portcullis/dnsx/dnstest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// TestWebQuarantineRelease is the quarantine end to end, through the real binary and a
// real browser: a rule quarantines a message whose Subject carries markup; headless
// Chromium logs in to the page as the postmaster, searches, opens the message (its
// Subject shown as text, no script run), sees the charts drawn, and releases it; the
// message is then in the postmaster's IMAP INBOX, not in Junk. A screenshot of each page
// is kept when the test fails.
func TestWebQuarantineRelease(t *testing.T) {
	chromium := testenv.Program(t, "chromium")
	dir := t.TempDir()
	dns := dnstest.New(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa.": {"PTR localhost.example.test."},
		"localhost.example.test.": {"A 127.0.0.1"},
	})
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(`rules:
  - name: user-blocks
    stage: rcpt
    if: rcpt.blocks_sender
    reject: 550 5.7.1 "the recipient blocks mail from you"
  - name: quarantine-marked
    stage: data
    if: msg.subject contains "QUARANTINE-ME"
    quarantine: true
`), 0o644))
	cfg := filepath.Join(dir, "portcullis.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: mx.example.test
data_dir: %s
local_domains: [example.test]
trusted_networks: [192.0.2.0/24]
postmaster: postmaster@example.test
rules: %s
http: { addr: "127.0.0.1:0" }
imap: { addr: "127.0.0.1:0" }
pop3: { addr: "" }
managesieve: { addr: "" }
log: { level: info }
dns: { servers: ["%s"], timeout: 2s }
smtp:
  listeners:
    - { name: mx, addr: "127.0.0.1:0", mode: mx }
`, filepath.Join(dir, "data"), rules, dns.Addr())), 0o644))
	srv := startServer(t, cfg, "mx", "imap", "http")
	defer srv.kill()
	requireEventually(t, func() bool { return passwordRe.MatchString(srv.logText()) })
	m := passwordRe.FindStringSubmatch(srv.logText())
	user, pass := m[1], m[2]

	const subject = `QUARANTINE-ME <script>alert(1)</script>"><img src=x onerror=alert(2)>`
	c, err := smtp.Dial(srv.addrs["mx"])
	require.NoError(t, err)
	require.NoError(t, c.Hello("client.example.net"))
	msg := "From: bank@bank.example\r\nTo: postmaster@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <q1@bank.example>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\nyour statement\r\n"
	require.NoError(t, c.SendMail("bank@bank.example", []string{user}, strings.NewReader(msg)))
	_ = c.Quit()
	requireEventually(t, func() bool { return strings.Contains(srv.logText(), "quarantined message held") })

	// The browser.
	// Screenshots go to PORTCULLIS_SCREENSHOTS when set (and stay), else to a temporary
	// directory kept only when the test fails.
	shots, keep := os.Getenv("PORTCULLIS_SCREENSHOTS"), true
	if shots == "" {
		shots, err = os.MkdirTemp("", "portcullis-web-screens-")
		keep = false
	} else {
		err = os.MkdirAll(shots, 0o755)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() || keep {
			t.Logf("screenshots of each page: %s", shots)
			return
		}
		os.RemoveAll(shots)
	})
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1200, 900))...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	dialogs := make(chan string, 4)
	// A script from the message would open a dialog: record it and close it.
	events := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			// The page's own script asks to confirm the buttons that cannot be undone
			// (a confirm); anything else is a script that should not have run.
			ok := ev.Type == page.DialogTypeConfirm
			if !ok {
				select {
				case dialogs <- string(ev.Type) + ": " + ev.Message:
				default:
				}
			}
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: ok})
		}
	}()
	step := 0
	// shot keeps a screenshot of the page after each step, for a failing test to show.
	shot := func(name string) {
		step++
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil { // 100: PNG
			_ = os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", step, name)), png, 0o644)
		}
	}
	do := func(name string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		err := chromedp.Do(bctx, steps...)
		shot(name)
		require.NoError(t, err, "browser step %s (screenshots in %s)", name, shots)
	}
	get := func(a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		require.NoError(t, err, "screenshots in %s", shots)
		return v
	}
	base := "http://" + srv.addrs["http"]

	do("login",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, user),
		chromedp.SendKeys(`input[name=password]`, pass),
		chromedp.Submit(`input[name=password]`),
		chromedp.WaitVisible(`table.list`),
	)
	require.Contains(t, get(chromedp.Text(`table.list`)), subject, "the list shows the Subject as text")

	do("search",
		chromedp.SetValue(`input[name=q]`, "bank.example quarantine-me"),
		chromedp.Submit(`input[name=q]`),
		chromedp.WaitVisible(`table.list`),
	)
	require.Contains(t, get(chromedp.Text(`table.list`)), "bank@bank.example")
	do("search-miss",
		chromedp.Navigate(base+"/quarantine?q=nothing-matches-this"),
		chromedp.WaitVisible(`p.empty`),
	)
	require.Contains(t, get(chromedp.Text(`p.empty`)), "Nothing in quarantine")

	do("charts",
		chromedp.Navigate(base+"/quarantine/charts"),
		chromedp.WaitVisible(`svg.chart`),
	)
	bars, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.bar").length`))
	require.NoError(t, err)
	require.Positive(t, bars, "no bar drawn")
	width, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.querySelector("svg.chart").getBoundingClientRect().width`))
	require.NoError(t, err)
	require.Greater(t, width, 100.0, "the chart is not laid out")

	do("detail",
		chromedp.Navigate(base+"/quarantine?q=quarantine-me"),
		chromedp.Click(`table.list a`),
		chromedp.WaitVisible(`#release`),
	)
	require.Contains(t, get(chromedp.Text(`dl.detail`)), subject, "the detail page shows the Subject as text")
	do("release",
		chromedp.Click(`#release`),
		chromedp.WaitVisible(`p.flash`),
	)
	require.Contains(t, get(chromedp.Text(`p.flash`)), "Released")
	select {
	case d := <-dialogs:
		t.Fatalf("a script from the message ran: dialog %q", d)
	default:
	}

	// The decision log has the quarantine decision, and its outcome: released.
	do("decisions",
		chromedp.Navigate(base+"/log?rule=quarantine-marked"),
		chromedp.WaitVisible(`table.log`),
	)
	require.Contains(t, get(chromedp.Text(`table.log`)), subject)
	do("decision", chromedp.Click(`table.log td[data-label=Subject] a`), chromedp.WaitVisible(`dl.detail`))
	detail := get(chromedp.Text(`dl.detail`))
	require.Contains(t, detail, "quarantine-marked")
	require.Contains(t, detail, subject)
	recordURL, err := chromedp.Run(bctx, chromedp.Location())
	require.NoError(t, err)
	requireEventually(t, func() bool { // the outcome is written asynchronously
		if err := chromedp.Do(bctx, chromedp.Navigate(recordURL), chromedp.WaitVisible(`dl.detail`)); err != nil {
			return false
		}
		d, err := chromedp.Run(bctx, chromedp.Text(`dl.detail`))
		return err == nil && strings.Contains(d, "released")
	})
	shot("decision-released")

	// The released message is in the INBOX, not in Junk, and the quarantine is empty.
	ic, err := imapclient.DialStartTLS(srv.addrs["imap"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	require.NoError(t, err)
	defer ic.Close()
	require.NoError(t, ic.Login(user, pass).Wait())
	requireEventually(t, func() bool {
		sel, err := ic.Select("INBOX", nil).Wait()
		return err == nil && sel.NumMessages == 1
	})
	msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	require.NoError(t, err)
	require.Equal(t, subject, msgs[0].Envelope.Subject)
	if sel, err := ic.Select("Junk", nil).Wait(); err == nil {
		require.Zero(t, sel.NumMessages, "the released message went to Junk")
	}
	require.NoError(t, ic.Logout().Wait())
	do("after", chromedp.Navigate(base+"/quarantine"), chromedp.WaitVisible(`p.empty`))

	// The user blocks the sender on the senders page; the rule rcpt.blocks_sender then
	// refuses its next message at RCPT.
	do("senders",
		chromedp.Navigate(base+"/senders"),
		chromedp.SendKeys(`input[name=sender]`, "@bank.example"),
		chromedp.Click(`form.inline button[value=block]`),
		chromedp.WaitVisible(`p.flash`),
	)
	require.Contains(t, get(chromedp.Text(`table.list`)), "@bank.example")
	c, err = smtp.Dial(srv.addrs["mx"])
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client.example.net"))
	stage, err := e2eSend(c, "other@bank.example", user, msg)
	require.Equal(t, "rcpt", stage)
	require.Equal(t, 550, smtpCode(err), "%v", err)
	require.Contains(t, smtpMessage(err), "blocks mail from you")
}
