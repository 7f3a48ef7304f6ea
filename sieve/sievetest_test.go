package sieve

// Differential test against Pigeonhole's sieve-test (Debian dovecot-sieve): the same
// (script, message, envelope) cases run through both, and the actions must agree.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/testenv"
)

// diffScripts are the script templates: hand-written filters and the scripts webmail
// generates (Roundcube's managesieve plugin, Nextcloud Mail's vacation responder).
var diffScripts = map[string]string{
	"empty": ``,
	"subject-fileinto": `require "fileinto";
if header :contains "subject" "invoice" { fileinto "Billing"; }`,
	"from-domain": `require "fileinto";
if address :domain :is "from" "example.org" { fileinto "Org"; } else { fileinto "Other"; }`,
	// Roundcube managesieve: forward without and with "keep a copy".
	"roundcube-forward": `require ["fileinto"];
# rule:[forward]
if true
{
	redirect "other@example.net";
}
`,
	"roundcube-forward-copy": `require ["copy"];
# rule:[forward copy]
if true
{
	redirect :copy "other@example.net";
}
`,
	"roundcube-vacation": `require ["vacation"];
# rule:[Out of office]
if true
{
	vacation :days 1 :subject "Out of office" :addresses ["bob@example.com"] "I am away until Monday.";
}
`,
	"roundcube-vacation-from": `require ["vacation"];
# rule:[vacation]
if true
{
	vacation :days 7 :subject "Away" :from "bob@example.com" "Back soon.";
}
`,
	// Nextcloud Mail's vacation responder with its date window (one open, one past).
	"nextcloud-vacation": `### Nextcloud Mail: Vacation Responder ### DON'T EDIT ###
require ["date","relational","vacation","variables"];
# {"version":1,"enabled":true,"start":"2020-01-01","end":"2099-12-31","subject":"On vacation","message":"I'm on vacation."}
if allof(currentdate :value "ge" "iso8601" "2020-01-01T00:00:00Z", currentdate :value "le" "iso8601" "2099-12-31T23:59:00Z") {
	if header :matches "subject" "*" { set "subject" "${1}"; }
	vacation :days 4 :subject "Re: ${subject}" :addresses ["bob@example.com"] "I'm on vacation.";
}
### Nextcloud Mail: Vacation Responder ### END ###
`,
	"nextcloud-vacation-past": `### Nextcloud Mail: Vacation Responder ### DON'T EDIT ###
require ["date","relational","vacation","variables"];
if allof(currentdate :value "ge" "iso8601" "2001-01-01T00:00:00Z", currentdate :value "le" "iso8601" "2001-01-08T23:59:00Z") {
	vacation :days 4 :subject "On vacation" :addresses ["bob@example.com"] "I'm on vacation.";
}
### Nextcloud Mail: Vacation Responder ### END ###
`,
	"spam": `require ["fileinto", "imap4flags"];
if header :contains "X-Spam-Flag" "YES" { addflag "Junk"; fileinto "Junk"; stop; }
keep;`,
	"flags": `require ["imap4flags", "fileinto"];
if address :is "from" "alice@example.org" { addflag "\\Flagged"; addflag "$Important"; }
if header :contains "subject" "invoice" { fileinto "Billing"; }`,
	"size": `if size :over 2K { discard; stop; }`,
	"reject": `require "reject";
if header :contains "subject" ["viagra", "lottery"] { reject "No spam, thanks."; }`,
	"list-variables": `require ["fileinto", "variables"];
if header :matches "List-Id" "*<*.example.org>*" { fileinto "lists.${2}"; }`,
	"subaddress": `require ["fileinto", "subaddress", "envelope"];
if envelope :detail "to" "lists" { fileinto "Lists"; } elsif envelope :user "to" "bob" { keep; }`,
	"envelope-from": `require ["envelope", "fileinto"];
if envelope :is "from" "mailer-daemon@example.org" { fileinto "Bounces"; }`,
	"count": `require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { fileinto "Crowd"; }`,
	"body": `require ["body", "fileinto"];
if body :text :contains "unsubscribe" { fileinto "Newsletters"; }`,
	"regex": `require ["regex", "fileinto", "variables"];
if header :regex "subject" "^\\[([a-z]+)\\]" { fileinto "tag-${1}"; }`,
	"anyof-not": `require "fileinto";
if anyof (not exists "date", header :is "precedence" "bulk") { fileinto "Bulk"; }
elsif allof (exists "list-id", not header :contains "from" "alice") { discard; }`,
	"copy-keep": `require ["fileinto", "copy"];
fileinto :copy "Archive"; keep;`,
	"redirect-dup": `redirect "x@example.net"; redirect "X@example.net"; keep;`,
	"octet": `require ["fileinto", "comparator-i;octet"];
if header :is :comparator "i;octet" "subject" "Invoice 42" { fileinto "Exact"; }`,
	"date": `require ["date", "relational", "fileinto"];
if date :value "lt" :originalzone "date" "date" "2020-01-01" { fileinto "Old"; }`,
	"vacation-seconds": `require ["vacation-seconds", "fileinto"];
if header :contains "subject" "urgent" { fileinto "Urgent"; }
vacation :seconds 3600 :handle "h1" "Away for an hour.";`,
	"keep-discard":   `keep; discard;`,
	"discard-keep":   `discard; keep;`,
	"stop-early":     `if exists "subject" { stop; } discard;`,
	"flags-implicit": `require "imap4flags"; setflag "\\Seen"; if header :contains "subject" "invoice" { addflag "$Invoice"; }`,
	"fileinto-inbox": `require ["fileinto", "imap4flags"]; fileinto :flags "\\Answered" "INBOX"; keep;`,
	"mailbox-create": `require ["fileinto", "mailbox"];
if header :contains "subject" "invoice" { fileinto :create "Billing/2026"; stop; }
fileinto "Rest";`,
}

var diffMessages = map[string]string{
	"plain":     "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.com>\r\nSubject: Invoice 42\r\nDate: Mon, 02 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m1@example.org>\r\n\r\nPlease find the invoice.\r\n",
	"list":      "From: Carol <carol@lists.example.org>\r\nTo: dev@lists.example.org\r\nSubject: [golang] release\r\nList-Id: Go dev <golang.example.org>\r\nPrecedence: list\r\nDate: Tue, 03 Nov 2026 10:00:00 +0000\r\n\r\nTo unsubscribe, write.\r\n",
	"spam":      "From: lottery@spam.example\r\nTo: bob@example.com, carol@example.com, dave@example.com\r\nSubject: You won the lottery\r\nX-Spam-Flag: YES\r\nDate: Tue, 03 Nov 2026 10:00:00 +0000\r\n\r\nClaim now.\r\n",
	"auto":      "From: robot@example.org\r\nTo: bob@example.com\r\nSubject: urgent: notification\r\nAuto-Submitted: auto-generated\r\nDate: Tue, 03 Nov 2019 10:00:00 +0000\r\n\r\nSomething happened.\r\n",
	"not-to-me": "From: Alice <alice@example.org>\r\nTo: someone@example.net\r\nSubject: [misc] hello\r\nDate: Tue, 03 Nov 2026 10:00:00 +0000\r\n\r\nHi.\r\n",
	"big-mime": "From: news@example.org\r\nTo: bob@example.com\r\nSubject: Newsletter\r\nDate: Tue, 03 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.Repeat("News of the week, all of it. ", 80) + "\r\nunsubscribe here\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>News</p>\r\n--b1--\r\n",
}

var diffEnvelopes = []Envelope{
	{From: "alice@example.org", To: "bob@example.com"},
	{From: "mailer-daemon@example.org", To: "bob+lists@example.com"},
}

// sieveTestRig runs sieve-test with a minimal configuration, as nobody when root
// (Dovecot refuses mail access as root).
type sieveTestRig struct {
	bin, dir, conf string
	asNobody       bool
}

func newSieveTestRig(t *testing.T) *sieveTestRig {
	bin := testenv.Program(t, "sieve-test")
	dir, err := os.MkdirTemp("", "sievetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	rig := &sieveTestRig{bin: bin, dir: dir}
	if uid == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			testenv.Unavailable(t, "sieve-test cannot run as root and there is no user nobody: %v", err)
		}
		fmt.Sscan(u.Uid, &uid)
		fmt.Sscan(u.Gid, &gid)
		rig.asNobody = true
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o777)
	conf := fmt.Sprintf(`mail_uid = %d
mail_gid = %d
first_valid_uid = 0
first_valid_gid = 0
base_dir = %s/run
mail_home = %s
mail_location = maildir:%s/Maildir
log_path = /dev/stderr
plugin {
  sieve_extensions = +vacation-seconds +editheader
  recipient_delimiter = +
}
`, uid, gid, dir, home, home)
	rig.conf = filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(rig.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return rig
}

func (rig *sieveTestRig) write(t *testing.T, name, content string) string {
	p := filepath.Join(rig.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (rig *sieveTestRig) run(ctx context.Context, execute bool, script, msg string, env Envelope) (string, error) {
	args := []string{"-c", rig.conf, "-f", env.From, "-r", env.To}
	if execute {
		args = append(args, "-e")
	}
	args = append(args, script, msg)
	var cmd *exec.Cmd
	if rig.asNobody {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "nobody", "--", rig.bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, rig.bin, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// parseSieveTest reads the "Performed actions" and "Implicit keep" lists of sieve-test.
func parseSieveTest(out string) []string {
	var acts []string
	section := ""
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "Performed actions:":
			section = ""
		case t == "Implicit keep:":
			section = "implicit "
		case strings.HasPrefix(t, "* store message in folder: "):
			acts = append(acts, section+"store "+strings.TrimPrefix(t, "* store message in folder: ")+" []")
		case strings.HasPrefix(t, "+ add IMAP flags: ") && len(acts) > 0:
			f := strings.Fields(strings.ToLower(strings.TrimPrefix(t, "+ add IMAP flags: ")))
			sort.Strings(f)
			last := acts[len(acts)-1]
			acts[len(acts)-1] = strings.TrimSuffix(last, "[]") + "[" + strings.Join(f, " ") + "]"
		case strings.HasPrefix(t, "* redirect message to: "):
			acts = append(acts, "redirect "+strings.Trim(strings.TrimPrefix(t, "* redirect message to: "), "<>"))
		case strings.HasPrefix(t, "* reject message"):
			acts = append(acts, "reject")
		case t == "* discard":
			acts = append(acts, "discard")
		case strings.HasPrefix(t, "* send vacation message"):
			acts = append(acts, "vacation")
		}
	}
	sort.Strings(acts)
	return acts
}

// ourActions renders a Result like parseSieveTest.
func ourActions(res *Result) (acts []string, vacationSent bool) {
	flags := func(f []string) string {
		l := make([]string, len(f))
		for i, x := range f {
			l[i] = strings.ToLower(x)
		}
		sort.Strings(l)
		return "[" + strings.Join(l, " ") + "]"
	}
	for _, a := range res.Actions {
		switch x := a.(type) {
		case Keep:
			p := ""
			if x.Implicit {
				p = "implicit "
			}
			acts = append(acts, p+"store INBOX "+flags(x.Flags))
		case FileInto:
			acts = append(acts, "store "+x.Mailbox+" "+flags(x.Flags))
		case Redirect:
			acts = append(acts, "redirect "+x.Address)
		case Reject:
			acts = append(acts, "reject")
		case Discard:
			acts = append(acts, "discard")
		case Vacation:
			acts = append(acts, "vacation")
			vacationSent = x.Skip == ""
		}
	}
	sort.Strings(acts)
	return acts, vacationSent
}

func TestSieveTestDifferential(t *testing.T) {
	rig := newSieveTestRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	type diffCase struct {
		script, msg string
		env         Envelope
	}
	var cases []diffCase
	var names []string
	for n := range diffScripts {
		names = append(names, n)
	}
	sort.Strings(names)
	var msgNames []string
	for n := range diffMessages {
		msgNames = append(msgNames, n)
	}
	sort.Strings(msgNames)
	for _, s := range names {
		rig.write(t, s+".sieve", diffScripts[s])
		for _, m := range msgNames {
			for _, e := range diffEnvelopes {
				cases = append(cases, diffCase{s, m, e})
			}
		}
	}
	for _, m := range msgNames {
		rig.write(t, m+".eml", diffMessages[m])
	}
	if len(cases) < 300 {
		t.Fatalf("only %d cases", len(cases))
	}

	var mu sync.Mutex
	failures, compared := 0, 0
	kinds := map[string]int{}
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("%s/%s/%s->%s", c.script, c.msg, c.env.From, c.env.To)
			script := filepath.Join(rig.dir, c.script+".sieve")
			msgPath := filepath.Join(rig.dir, c.msg+".eml")
			out, err := rig.run(ctx, false, script, msgPath, c.env)
			if err != nil {
				mu.Lock()
				t.Errorf("%s: sieve-test: %v\n%s", name, err, out)
				failures++
				mu.Unlock()
				return
			}
			want := parseSieveTest(out)
			sc, err := Compile([]byte(diffScripts[c.script]), Options{Delimiter: "+"})
			if err != nil {
				mu.Lock()
				t.Errorf("%s: compile: %v", name, err)
				failures++
				mu.Unlock()
				return
			}
			res, err := sc.Run(ctx, NewMessage([]byte(diffMessages[c.msg])), c.env, nil)
			if err != nil {
				mu.Lock()
				t.Errorf("%s: run: %v", name, err)
				failures++
				mu.Unlock()
				return
			}
			got, sent := ourActions(res)
			if !contains(got, "vacation") {
				// Result.String prints what sieve-test prints.
				if w, g := sieveTestText(out), strings.ToLower(res.String()); w != g {
					mu.Lock()
					t.Errorf("%s: Result.String differs from sieve-test:\n%s\n---\n%s", name, w, g)
					failures++
					mu.Unlock()
					return
				}
			}
			var wantSent bool
			if strings.Contains(diffScripts[c.script], "vacation") && contains(got, "vacation") {
				// Whether the reply goes out is decided when sieve-test executes.
				eout, err := rig.run(ctx, true, script, msgPath, c.env)
				// A failed store (a folder the test store lacks) still ends the run
				// with the implicit keep; only a run without a result is an error.
				if err != nil && !strings.Contains(eout, "final result:") {
					mu.Lock()
					t.Errorf("%s: sieve-test -e: %v\n%s", name, err, eout)
					failures++
					mu.Unlock()
					return
				}
				wantSent = strings.Contains(eout, "sent vacation response")
			}
			mu.Lock()
			defer mu.Unlock()
			compared++
			for _, a := range want {
				kinds[strings.Fields(a)[0]]++
			}
			if wantSent {
				kinds["vacation-sent"]++
			}
			if strings.Join(got, "|") != strings.Join(want, "|") || sent != wantSent {
				failures++
				t.Errorf("%s:\n  sieve-test: %q vacation sent=%v\n  ours:       %q vacation sent=%v", name, want, wantSent, got, sent)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d cases compared with sieve-test, %d differ; actions seen: %v", compared, failures, kinds)
	// The cases must exercise every kind of action, or the comparison proves little.
	for _, k := range []string{"store", "implicit", "redirect", "reject", "discard", "vacation", "vacation-sent"} {
		if kinds[k] == 0 {
			t.Errorf("no case produced %q", k)
		}
	}
}

// sieveTestText is sieve-test's listing of the actions, lowercased (Pigeonhole
// lowercases system flags).
func sieveTestText(out string) string {
	i := strings.Index(out, "\nPerformed actions:")
	j := strings.Index(out, "\nImplicit keep:")
	if i < 0 || j < 0 {
		return out
	}
	rest := out[j:]
	if k := strings.Index(rest, "\n\n"); k >= 0 {
		// the keep list ends at the first blank line after its own header's
		if m := strings.Index(rest[k+2:], "\n\n"); m >= 0 {
			rest = rest[:k+2+m+1]
		}
	}
	return strings.ToLower(out[i:j] + rest)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
