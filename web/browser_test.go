package web

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-mail/portcullis/decisionlog"
	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// browser is a headless Chromium tab whose every step leaves a screenshot, kept when the
// test fails (or in PORTCULLIS_SCREENSHOTS when set).
type browser struct {
	t       *testing.T
	ctx     context.Context
	shots   string
	step    int
	dialogs chan string
}

func newBrowser(t *testing.T) *browser {
	chromium := testenv.Program(t, "chromium")
	shots, keep := os.Getenv("PORTCULLIS_SCREENSHOTS"), true
	var err error
	if shots == "" {
		shots, err = os.MkdirTemp("", "portcullis-web-screens-")
		keep = false
	} else {
		err = os.MkdirAll(shots, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || keep {
			t.Logf("screenshots of each page: %s", shots)
			return
		}
		os.RemoveAll(shots)
	})
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1200, 900))...)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	bctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: bctx, shots: shots, dialogs: make(chan string, 4)}
	events := chromedp.Events(bctx, cdppage.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			ok := ev.Type == cdppage.DialogTypeConfirm // the page's own "are you sure?"
			if !ok {
				select {
				case b.dialogs <- string(ev.Type) + ": " + ev.Message:
				default:
				}
			}
			_, _ = chromedp.Call(bctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: ok})
		}
	}()
	return b
}

func (b *browser) do(name string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	err := chromedp.Do(b.ctx, steps...)
	b.step++
	if png, serr := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); serr == nil { // 100: PNG
		_ = os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.step, name)), png, 0o644)
	}
	if err != nil {
		b.t.Fatalf("browser step %s: %v (screenshots in %s)", name, err, b.shots)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v (screenshots in %s)", sel, err, b.shots)
	}
	return s
}

func (b *browser) noScriptRan() {
	b.t.Helper()
	select {
	case d := <-b.dialogs:
		b.t.Fatalf("a script from mail ran: %s", d)
	default:
	}
}

// The decision pages in a real browser: log in, search by policy, open the detail, see
// the charts drawn, release a quarantined message, on a phone-sized window too.
func TestBrowserDecisionPages(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	for i := range 6 {
		r.log.Add(decisionlog.Record{Time: time.Now().Add(-time.Duration(i) * 20 * time.Hour), Listener: "mx",
			ClientIP: netip.MustParseAddr("203.0.113.9"), Sender: fmt.Sprintf("s%d@spam.test", i), Recipient: "alice@example.test",
			Subject: fmt.Sprintf("spam %d %s", i, evil), Stage: "rcpt", Verdict: "reject", Reply: "554 5.7.1 listed by zen",
			Rule: "zen", Category: "RBL", Policies: []decisionlog.PolicyResult{{Name: "zen", Stage: "rcpt", Status: "fail", Reason: "rbl.listed"}}})
	}
	r.log.Add(decisionlog.Record{Time: time.Now().Add(-time.Hour), Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.5"),
		Sender: "news@shop.example", Recipient: "alice@example.test", Subject: "weekly news", Stage: "data", Verdict: "accept",
		QueueID: "Q9", Outcome: "delivered", Policies: []decisionlog.PolicyResult{{Name: "spf", Stage: "mail", Status: "pass"}}})
	if err := r.log.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	qid := r.quarantine("bank@bank.example", "statement "+evil, "alice@example.test")

	b.do("login",
		chromedp.Navigate(r.ts.URL+"/"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "alice@example.test"),
		chromedp.SendKeys(`input[name=password]`, pw),
		chromedp.Submit(`input[name=password]`),
		chromedp.WaitVisible(`table.list`),
	)
	b.do("decisions", chromedp.Navigate(r.ts.URL+"/log"), chromedp.WaitVisible(`table.log`))
	if got := b.text(`table.log`); !strings.Contains(got, "weekly news") || !strings.Contains(got, "spam 0 "+evil) {
		t.Errorf("decision list:\n%s", got)
	}
	b.do("search-policy",
		chromedp.SetValue(`input[name=policy]`, "zen"),
		chromedp.Submit(`input[name=policy]`),
		chromedp.WaitVisible(`table.log`),
	)
	got := b.text(`table.log`)
	if strings.Contains(got, "weekly news") || strings.Count(got, "spam.test") != 6 {
		t.Errorf("search by policy zen:\n%s", got)
	}
	b.do("detail", chromedp.Click(`table.log tbody tr:first-child td[data-label=Subject] a`), chromedp.WaitVisible(`dl.detail`))
	if d := b.text(`main`); !strings.Contains(d, "554 5.7.1 listed by zen") || !strings.Contains(d, "rbl.listed") || !strings.Contains(d, evil) {
		t.Errorf("detail page:\n%s", d)
	}
	b.do("charts", chromedp.Navigate(r.ts.URL+"/charts"), chromedp.WaitVisible(`svg.chart`))
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.bar").length`))
	if err != nil || n < 6 {
		t.Errorf("charts: %d bars, %v", n, err)
	}
	w, err := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`document.querySelector("svg.chart").getBoundingClientRect().width`))
	if err != nil || w < 100 {
		t.Errorf("chart width %v, %v", w, err)
	}
	b.do("quarantine-item",
		chromedp.Navigate(r.ts.URL+ItemURL(qid, "alice@example.test")),
		chromedp.WaitVisible(`#release`),
	)
	b.do("release", chromedp.Click(`#release`), chromedp.WaitVisible(`p.flash`))
	if f := b.text(`p.flash`); !strings.Contains(f, "Released") {
		t.Errorf("after release: %s", f)
	}
	ids, _ := r.sp.List()
	if len(ids) != 1 || ids[0] == qid {
		t.Errorf("queue after release: %v", ids)
	}
	// A phone: the table rows become cards, nothing wider than the screen.
	b.do("phone",
		chromedp.EmulateViewport(390, 800),
		chromedp.Navigate(r.ts.URL+"/log"),
		chromedp.WaitVisible(`table.log`),
	)
	over, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil || over {
		t.Errorf("the decision list is wider than a phone's screen (%v)", err)
	}
	b.noScriptRan()
}
