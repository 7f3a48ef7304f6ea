package pop3d

// External POP3 clients (Python's poplib, fetchmail) against a server on loopback over
// the real store, every answer compared with what the store holds: the message files,
// their sizes on the wire, their maildir keys (the UIDLs) and flags.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-mail/portcullis/internal/mailboxtest"
	"github.com/portcullis-mail/portcullis/internal/testenv"
	"github.com/portcullis-mail/portcullis/store"
)

// corpus is a maildrop of the shapes a POP3 server gets wrong: dot-stuffing, bare LF
// line ends, no final line end, no body, no header/body separator, lines longer than the
// server's read buffer in the header and in the body (TOP counts lines, not buffer
// reads), a bare CR, 8-bit text and a message of many lines.
func corpus() []string {
	// "X-Long: " and these fill the server's 32 KiB read buffer: the CRLF comes alone
	// in the next read, which must not be taken for the blank line ending the header.
	long := strings.Repeat("h", 32760)
	body := strings.Repeat("b", 70000)
	var big strings.Builder
	big.WriteString("Subject: big\r\n\r\n")
	for i := 0; big.Len() < 300000; i++ {
		fmt.Fprintf(&big, "line %d of a long message %s\r\n", i, strings.Repeat("x", i%90))
	}
	return []string{
		"From: x@example.org\r\nSubject: dots\r\n\r\nline1\r\n.dotted line\r\n.\r\n..\r\nlast\r\n",
		"Subject: bare lf\n\nline one\n.line two\nline three\n",
		"Subject: no final newline\r\n\r\nfirst\r\nsecond without CRLF",
		"Subject: headers only\r\nX-A: b\r\n",
		"Subject: empty body\r\n\r\n",
		"Subject: long header\r\nX-Long: " + long + "\r\nX-After: yes\r\n\r\nb1\r\nb2\r\nb3\r\n",
		"Subject: long body line\r\n\r\n" + body + "\r\nsecond\r\nthird\r\n",
		"Subject: =?utf-8?q?8bit?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nr\xc3\xa9sum\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\nbare\rcr\r\n",
		big.String(),
	}
}

// wireLines is what a POP3 client reads for a message: its lines (CRLF or LF ended, the
// last one possibly without an end), dot-stuffing undone.
func wireLines(msg string) []string {
	s := strings.ReplaceAll(msg, "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

// topLines is what TOP n sends (RFC 1939 §7): the header, the blank line and n lines of
// the body; the whole message when it has no blank line.
func topLines(msg string, n int) []string {
	ls := wireLines(msg)
	for i, l := range ls {
		if l == "" {
			return ls[:min(len(ls), i+1+n)]
		}
	}
	return ls
}

// poplibScript logs in over STLS with USER/PASS (or AUTH PLAIN when argv[5] is "plain"),
// records CAPA before and after TLS, STAT, LIST, UIDL, RETR and TOP with several line
// counts of every message, the replies to bad commands, then runs the deletions of
// argv[6] (a comma-separated list, "" for none) with an RSET between two rounds, and
// QUIT. It prints one JSON object; byte strings are base64.
const poplibScript = `
import base64, json, poplib, ssl, sys
poplib._MAXLINE = 1 << 20
host, port, cafile, user, mech, dele = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3(host, int(port), timeout=20)
out = {"capa_plain": sorted(p.capa().keys())}
p.stls(ctx)
out["capa_tls"] = {k: v for k, v in p.capa().items()}
if mech == "plain":
    tok = base64.b64encode(("\0%s\0%s" % (user, sys.argv[7])).encode()).decode()
    out["login"] = p._shortcmd("AUTH PLAIN " + tok).decode()
else:
    p.user(user)
    out["login"] = p.pass_(sys.argv[7]).decode()
out["stat"] = p.stat()
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
b = lambda ls: [base64.b64encode(l).decode() for l in ls]
msgs = []
for i in range(1, out["stat"][0] + 1):
    resp, lines, octets = p.retr(i)
    m = {"retr_resp": resp.decode(), "retr": b(lines), "top": {}}
    for n in (0, 1, 2, 99999999):
        m["top"][str(n)] = b(p.top(i, n)[1])
    m["uidl"] = p.uidl(i).decode()
    m["list"] = p.list(i).decode()
    msgs.append(m)
out["msgs"] = msgs
errs = {}
for c in ("TOP 1 -1", "TOP 1 x", "TOP 0 1", "TOP 1 99999999999999999999999", "TOP 1",
          "RETR 99999999999", "RETR %d" % (out["stat"][0] + 1), "LIST 0", "UIDL -1",
          "DELE", "XTND XMIT", "STLS", "USER again", "AUTH PLAIN", "RETR 1 2"):
    try:
        errs[c] = p._shortcmd(c).decode()
    except poplib.error_proto as e:
        errs[c] = e.args[0].decode()
out["errors"] = errs
out["noop"] = p.noop().decode()
if dele:
    nums = [int(x) for x in dele.split(",")]
    for n in nums:
        p.dele(n)
    out["stat_deleted"] = p.stat()
    out["list_deleted"] = [l.decode() for l in p.list()[1]]
    try:
        p.retr(nums[0])
        out["retr_deleted"] = "+OK"
    except poplib.error_proto as e:
        out["retr_deleted"] = e.args[0].decode()
    out["rset"] = p.rset().decode()
    out["stat_rset"] = p.stat()
    for n in nums:
        p.dele(n)
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

type poplibResult struct {
	CapaPlain []string            `json:"capa_plain"`
	CapaTLS   map[string][]string `json:"capa_tls"`
	Login     string
	Stat      [2]int64
	List      []string
	UIDL      []string
	Msgs      []struct {
		RetrResp string              `json:"retr_resp"`
		Retr     []string            `json:"retr"`
		Top      map[string][]string `json:"top"`
		UIDL     string
		List     string
	}
	Errors      map[string]string
	Noop        string
	StatDeleted [2]int64 `json:"stat_deleted"`
	ListDeleted []string `json:"list_deleted"`
	RetrDeleted string   `json:"retr_deleted"`
	Rset        string
	StatRset    [2]int64 `json:"stat_rset"`
	Quit        string
}

func runPoplib(t *testing.T, e *env, user, pass, mech, dele string) poplibResult {
	t.Helper()
	py := testenv.Program(t, "python3")
	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", poplibScript, host, port, e.cert, user, mech, dele, pass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, stderr.Bytes())
	}
	var r poplibResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("poplib output: %v\n%s", err, out)
	}
	return r
}

func unb64(t *testing.T, ls []string) []string {
	t.Helper()
	out := make([]string, len(ls))
	for i, l := range ls {
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}

// storeFile reads message m of user's INBOX as the store holds it.
func storeFile(t *testing.T, st *store.Store, user string, m store.Message) string {
	t.Helper()
	u, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	f, err := u.Open(store.Mailbox{Name: store.Inbox}, m)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b bytes.Buffer
	b.ReadFrom(f)
	return b.String()
}

// TestPoplibAgainstStore: every answer poplib gets (STAT, LIST, UIDL, RETR, TOP with 0,
// 1, 2 and 99999999 lines, DELE, RSET, QUIT, CAPA before and after STLS, USER/PASS and
// AUTH PLAIN) is what the store holds; bad commands get -ERR and the session goes on.
func TestPoplibAgainstStore(t *testing.T) {
	e := start(t, Config{MaxErrors: 50})
	const user, pass = "alice@example.org", "secret pw"
	msgs := corpus()
	for _, m := range msgs {
		e.deliver(t, user, m)
	}
	stored := mailboxtest.Inbox(t, e.store, user)
	if len(stored) != len(msgs) {
		t.Fatalf("store holds %d messages", len(stored))
	}
	files := make([]string, len(stored))
	var total int64
	for i, m := range stored {
		files[i] = storeFile(t, e.store, user, m)
		if files[i] != msgs[i] {
			t.Fatalf("message %d stored as %q", i+1, files[i][:min(len(files[i]), 80)])
		}
		total += m.SizeCRLF
	}

	r := runPoplib(t, e, user, pass, "user", "3,5")
	if !slices.Contains(r.CapaPlain, "STLS") || slices.Contains(r.CapaPlain, "USER") || slices.Contains(r.CapaPlain, "SASL") {
		t.Errorf("CAPA before TLS: %v", r.CapaPlain)
	}
	for _, c := range []string{"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"} {
		if _, ok := r.CapaTLS[c]; !ok {
			t.Errorf("CAPA after TLS lacks %s: %v", c, r.CapaTLS)
		}
	}
	if _, ok := r.CapaTLS["STLS"]; ok || !slices.Equal(r.CapaTLS["SASL"], []string{"PLAIN"}) {
		t.Errorf("CAPA after TLS: %v", r.CapaTLS)
	}
	if !strings.HasPrefix(r.Login, "+OK") || r.Stat != [2]int64{int64(len(msgs)), total} {
		t.Fatalf("login %q, STAT %v, store %d messages %d octets", r.Login, r.Stat, len(msgs), total)
	}
	for i, m := range stored {
		n := i + 1
		if want := fmt.Sprintf("%d %d", n, m.SizeCRLF); r.List[i] != want || r.Msgs[i].List != "+OK "+want {
			t.Errorf("LIST of %d: %q, %q; want %q", n, r.List[i], r.Msgs[i].List, want)
		}
		if want := fmt.Sprintf("%d %s", n, m.Key); r.UIDL[i] != want || r.Msgs[i].UIDL != "+OK "+want {
			t.Errorf("UIDL of %d: %q, %q; want %q", n, r.UIDL[i], r.Msgs[i].UIDL, want)
		}
		got := r.Msgs[i]
		if want := fmt.Sprintf("+OK %d octets", m.SizeCRLF); got.RetrResp != want {
			t.Errorf("RETR %d: %q, want %q", n, got.RetrResp, want)
		}
		if l := unb64(t, got.Retr); !slices.Equal(l, wireLines(files[i])) {
			t.Errorf("RETR %d: %d lines differ from the stored file's %d: %.200q", n, len(l), len(wireLines(files[i])), l)
		}
		for _, k := range []int{0, 1, 2, 99999999} {
			if l := unb64(t, got.Top[fmt.Sprint(k)]); !slices.Equal(l, topLines(files[i], k)) {
				t.Errorf("TOP %d %d: %d lines, want %d: %.300q", n, k, len(l), len(topLines(files[i], k)), l)
			}
		}
	}
	for c, resp := range r.Errors {
		if !strings.HasPrefix(resp, "-ERR") {
			t.Errorf("%s: %q, want -ERR", c, resp)
		}
	}
	if r.Noop != "+OK" {
		t.Errorf("NOOP after the bad commands: %q", r.Noop)
	}
	rest := total - stored[2].SizeCRLF - stored[4].SizeCRLF
	if r.StatDeleted != [2]int64{int64(len(msgs) - 2), rest} || len(r.ListDeleted) != len(msgs)-2 ||
		slices.ContainsFunc(r.ListDeleted, func(l string) bool { return strings.HasPrefix(l, "3 ") || strings.HasPrefix(l, "5 ") }) {
		t.Errorf("after DELE 3, 5: STAT %v, LIST %v", r.StatDeleted, r.ListDeleted)
	}
	if !strings.HasPrefix(r.RetrDeleted, "-ERR") || r.Rset != "+OK" || r.StatRset != [2]int64{int64(len(msgs)), total} {
		t.Errorf("RETR of a deleted message %q, RSET %q, STAT after RSET %v", r.RetrDeleted, r.Rset, r.StatRset)
	}
	if !strings.HasPrefix(r.Quit, "+OK") {
		t.Errorf("QUIT: %q", r.Quit)
	}

	// The UPDATE state removed 3 and 5 and marked the retrieved ones \Seen (as Dovecot).
	after := mailboxtest.Inbox(t, e.store, user)
	var uids []uint32
	for _, m := range after {
		uids = append(uids, m.UID)
		if !slices.Contains(m.Flags, store.FlagSeen) {
			t.Errorf("message %d not \\Seen after RETR: %v", m.UID, m.Flags)
		}
	}
	if !slices.Equal(uids, []uint32{1, 2, 4, 6, 7, 8, 9}) {
		t.Fatalf("store after QUIT holds %v", uids)
	}

	// A second session, by AUTH PLAIN, sees the same UIDLs (the files were renamed by
	// the \Seen change) and nothing deleted.
	r2 := runPoplib(t, e, user, pass, "plain", "")
	if !strings.HasPrefix(r2.Login, "+OK") || r2.Stat[0] != int64(len(after)) {
		t.Fatalf("AUTH PLAIN %q, STAT %v", r2.Login, r2.Stat)
	}
	for i, m := range after {
		if want := fmt.Sprintf("%d %s", i+1, m.Key); r2.UIDL[i] != want || !strings.Contains(r.UIDL[m.UID-1], m.Key) {
			t.Errorf("second session UIDL %q, want %q (first %q)", r2.UIDL[i], want, r.UIDL[m.UID-1])
		}
		if l := unb64(t, r2.Msgs[i].Retr); !slices.Equal(l, wireLines(files[m.UID-1])) {
			t.Errorf("second session RETR %d differs", i+1)
		}
	}
}

// fetchmailRun runs fetchmail once against the server's STLS listener with the server
// options and user options given, delivering to an MDA that writes each message to its
// own file in dir/out, and returns fetchmail's output.
func fetchmailRun(t *testing.T, e *env, dir, serverOpts, userOpts string) string {
	t.Helper()
	return fetchmailAt(t, e.addr, e.cert, dir, serverOpts, userOpts)
}

// fetchmailAt is fetchmailRun against addr; userOpts "ssl" makes it implicit TLS.
func fetchmailAt(t *testing.T, addr, cert, dir, serverOpts, userOpts string) string {
	t.Helper()
	fm := testenv.Program(t, "fetchmail")
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o700)
	rc := filepath.Join(dir, "fetchmailrc")
	// sslproto without ssl: fetchmail must use STLS and refuse plaintext (RFC 2595);
	// with ssl (userOpts), implicit TLS (POP3S).
	os.WriteFile(rc, []byte(fmt.Sprintf(`set no bouncemail
poll %s service %s protocol POP3 timeout 20 %s:
  user "alice@example.org" password "secret pw" sslproto "TLS1.2+" sslcertck sslcommonname localhost sslcertfile %q
  mda "/bin/sh -c 'cat > $(mktemp %s/msg.XXXXXXXX)'" %s
`, host, port, serverOpts, cert, out, userOpts)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fm, "-f", rc, "--nodetach", "--nosyslog", "-v", "-v", "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	b, err := cmd.CombinedOutput()
	// Exit 1: no mail, which a later run expects.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	return string(b)
}

// fetched returns the messages fetchmail delivered so far, less the Received header it
// adds, and empties the output directory.
func fetched(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "out", "msg.*"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(f)
		s := string(b)
		// fetchmail prepends "Received: from ... \n\t...\n" (continuation lines).
		if strings.HasPrefix(s, "Received: ") {
			i := strings.Index(s, "\n")
			for i+1 < len(s) && (s[i+1] == '\t' || s[i+1] == ' ') {
				i += 1 + strings.Index(s[i+1:], "\n")
			}
			s = s[i+1:]
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// lfText is msg as fetchmail hands it to an MDA: LF line ends, ending in one, a bare CR
// dropped, a blank line after a header without a body.
func lfText(msg string) string {
	s := strings.ReplaceAll(msg, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if !strings.Contains(s, "\n\n") {
		s += "\n"
	}
	return s
}

// fetchmailCorpus is the corpus less the messages with lines longer than RFC 5322 §2.1.1
// allows (998 octets): fetchmail splits those at its 8 KiB buffer (poplib gets them
// whole in TestPoplibAgainstStore).
func fetchmailCorpus() []string {
	var out []string
	for _, m := range corpus() {
		if !slices.ContainsFunc(wireLines(m), func(l string) bool { return len(l) > 998 }) {
			out = append(out, m)
		}
	}
	return out
}

// TestFetchmailKeepUIDL: fetchmail leaving mail on the server ("keep" with client-side
// "uidl", so it downloads with TOP n 99999999) gets every message exactly as stored, and
// after an IMAP-side flag change (the files renamed) it downloads only the new message; a run without "keep" (RETR, DELE) then empties the maildrop.
func TestFetchmailKeepUIDL(t *testing.T) {
	e := start(t, Config{})
	const user = "alice@example.org"
	msgs := fetchmailCorpus()
	for _, m := range msgs {
		e.deliver(t, user, m)
	}
	dir := t.TempDir()
	log := fetchmailRun(t, e, dir, "uidl", "keep")
	if !strings.Contains(log, "STLS") || !strings.Contains(log, "TOP 1 99999999") {
		t.Fatalf("fetchmail did not use STLS and TOP:\n%s", log)
	}
	want := make([]string, len(msgs))
	for i, m := range msgs {
		want[i] = lfText(m)
	}
	slices.Sort(want)
	got := fetched(t, dir)
	if len(got) != len(want) {
		t.Fatalf("fetchmail delivered %d messages, want %d\n%s", len(got), len(want), log)
	}
	for i := range want {
		if got[i] != want[i] {
			j := 0
			for j < min(len(got[i]), len(want[i])) && got[i][j] == want[i][j] {
				j++
			}
			t.Errorf("fetchmail delivered %d bytes, want %d, differing at %d: %.80q vs %.80q", len(got[i]), len(want[i]), j, got[i][j:], want[i][j:])
		}
	}
	stored := mailboxtest.Inbox(t, e.store, user)
	for _, m := range stored {
		if slices.Contains(m.Flags, store.FlagSeen) {
			t.Errorf("TOP marked message %d \\Seen", m.UID)
		}
	}

	// An IMAP client flags two messages (their files move to cur/ with new names), and a
	// new one arrives; fetchmail must fetch only that one.
	u, err := e.store.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox(context.Background(), store.Inbox)
	if _, err := u.SetFlags(context.Background(), mb, []uint32{1, 4}, store.FlagsAdd, []string{store.FlagFlagged, "$Label1"}, nil); err != nil {
		t.Fatal(err)
	}
	u.Release()
	newMsg := "Subject: arrived later\r\n\r\nnew\r\n"
	e.deliver(t, user, newMsg)
	fetchmailRun(t, e, dir, "uidl", "keep")
	if got := fetched(t, dir); !slices.Equal(got, []string{lfText(newMsg)}) {
		t.Fatalf("after a flag change fetchmail fetched %d messages, want only the new one: %.200q", len(got), got)
	}

	// fetchall without keep: RETR and DELE of every message, the ones seen before too.
	log = fetchmailRun(t, e, dir, "uidl", "fetchall")
	if !strings.Contains(log, "RETR") || !strings.Contains(log, "DELE") {
		t.Fatalf("fetchall run without RETR/DELE:\n%s", log)
	}
	if got := fetched(t, dir); len(got) != len(msgs)+1 {
		t.Fatalf("fetchall delivered %d messages, want %d", len(got), len(msgs)+1)
	}
	if left := mailboxtest.Inbox(t, e.store, user); len(left) != 0 {
		t.Fatalf("%d messages left after fetchall without keep", len(left))
	}
}

// TestFetchmailPOP3S: fetchmail over implicit TLS (port 995's kind of listener) gets the
// messages as stored and deletes them.
func TestFetchmailPOP3S(t *testing.T) {
	e := start(t, Config{})
	const user = "alice@example.org"
	msgs := fetchmailCorpus()[:3]
	for _, m := range msgs {
		e.deliver(t, user, m)
	}
	dir := t.TempDir()
	log := fetchmailAt(t, mailboxtest.ServeTLS(t, e.srv, e.tls), e.cert, dir, "", "ssl")
	if strings.Contains(log, "STLS") || !strings.Contains(log, "DELE 3") {
		t.Fatalf("fetchmail over POP3S:\n%s", log)
	}
	var want []string
	for _, m := range msgs {
		want = append(want, lfText(m))
	}
	slices.Sort(want)
	if got := fetched(t, dir); !slices.Equal(got, want) {
		t.Fatalf("fetchmail over POP3S delivered %.300q", got)
	}
	if left := mailboxtest.Inbox(t, e.store, user); len(left) != 0 {
		t.Fatalf("%d messages left", len(left))
	}
}
