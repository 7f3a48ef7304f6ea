package sieve

// The vnd.dovecot.testsuite extension (Pigeonhole's src/testsuite), in a test file only,
// so Pigeonhole's own .svtest files run against this package (pigeonhole_test.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const testsuiteExt = "vnd.dovecot.testsuite"

type suiteKey struct{}

// suite is the state of one .svtest file's run.
type suite struct {
	dir       string // the .svtest's folder; test_script_compile paths are relative to it
	mailboxes map[string][]stored
	smtp      []sentMail
	compiled  *Script
	errs      []string
	config    map[string]string
	binaries  map[string]*Script
	seen      map[string]time.Time
	results   []blockResult
	inTest    bool
	cur       *runner // the runner whose message the host reads
}

type stored struct {
	raw   []byte
	flags []string
}

type sentMail struct {
	from, to string
	raw      []byte
}

type blockResult struct {
	name string
	fail string // "" when it passed
}

// testFail is what test_fail raises: it ends the test block.
type testFail struct{ msg string }

func (e *testFail) Error() string { return "test_fail: " + e.msg }

func suiteOf(r *runner) *suite { return r.ctx.Value(suiteKey{}).(*suite) }

func init() {
	extensions[testsuiteExt] = false // not advertised
	reg := func(name string, f func(c *compiler, n *node) cmd) {
		commands[name] = &cmdSpec{ext: testsuiteExt, compile: f}
	}
	regT := func(name string, f func(c *compiler, n *node) test) {
		tests[name] = &testSpec{ext: testsuiteExt, compile: f}
	}
	reg("test", compileTestBlock)
	reg("test_fail", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		msg := c.str(pa.pos[0].strs[0])
		return cmdFunc(func(r *runner) error { return &testFail{msg.eval(r)} })
	})
	reg("test_set", compileTestSet)
	reg("test_message", func(c *compiler, n *node) cmd {
		t := compileTestMessage(c, n)
		if t == nil {
			return nil
		}
		return cmdFunc(func(r *runner) error {
			ok, err := t.eval(r)
			if err == nil && !ok {
				return r.errorf(n.pos, "test_message: no such message")
			}
			return err
		})
	})
	regT("test_message", compileTestMessage)
	reg("test_result_reset", func(c *compiler, n *node) cmd {
		return cmdFunc(func(r *runner) error { resetResult(r); return nil })
	})
	reg("test_result_print", func(c *compiler, n *node) cmd { return nopCmd{} })
	reg("test_mailbox_create", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		name := c.str(pa.pos[0].strs[0])
		return cmdFunc(func(r *runner) error {
			s := suiteOf(r)
			if _, ok := s.mailboxes[NormalizeMailbox(name.eval(r))]; !ok {
				s.mailboxes[NormalizeMailbox(name.eval(r))] = nil
			}
			return nil
		})
	})
	reg("test_config_set", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString, aString) {
			return nil
		}
		k, v := c.str(pa.pos[0].strs[0]), c.str(pa.pos[1].strs[0])
		return cmdFunc(func(r *runner) error { suiteOf(r).config[k.eval(r)] = v.eval(r); return nil })
	})
	reg("test_config_unset", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		k := c.str(pa.pos[0].strs[0])
		return cmdFunc(func(r *runner) error { delete(suiteOf(r).config, k.eval(r)); return nil })
	})
	reg("test_config_reload", func(c *compiler, n *node) cmd {
		if _, ok := c.args(n, []tagSpec{{name: "extension", param: aString}}); !ok {
			return nil
		}
		return cmdFunc(func(r *runner) error {
			// The running test script takes the new limits too.
			if v, err := strconv.Atoi(suiteOf(r).config["sieve_variables_max_variable_size"]); err == nil {
				r.s.lim.MaxVariableSize = v
			}
			r.s.opt.Delimiter = suiteOf(r).config["recipient_delimiter"]
			r.s.opt.Vacation = suiteOf(r).vacationOptions()
			r.s.opt.EditHeader = suiteOf(r).editHeaderOptions()
			return nil
		})
	})
	reg("test_binary_save", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		name := c.str(pa.pos[0].strs[0])
		return cmdFunc(func(r *runner) error { s := suiteOf(r); s.binaries[name.eval(r)] = s.compiled; return nil })
	})
	reg("test_binary_load", func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		name := c.str(pa.pos[0].strs[0])
		return cmdFunc(func(r *runner) error {
			s := suiteOf(r)
			b, ok := s.binaries[name.eval(r)]
			if !ok {
				return r.errorf(n.pos, "test_binary_load: no binary %q", name.eval(r))
			}
			s.compiled = b
			return nil
		})
	})
	// vnd.dovecot.debug's debug_log, which some .svtest files require, logs nothing
	// here.
	extensions["vnd.dovecot.debug"] = false
	commands["debug_log"] = &cmdSpec{ext: "vnd.dovecot.debug", compile: func(c *compiler, n *node) cmd {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aString) {
			return nil
		}
		return nopCmd{}
	}}
	regT("test_script_compile", compileTestScriptCompile)
	regT("test_script_run", compileTestScriptRun)
	regT("test_result_execute", func(c *compiler, n *node) test {
		return testFunc(func(r *runner) (bool, error) { return executeResult(r), nil })
	})
	regT("test_result_action", compileTestResultAction)
	regT("test_multiscript", func(c *compiler, n *node) test {
		pa, ok := c.args(n, nil)
		if !ok || !c.positional(n, pa, aStringList) {
			return nil
		}
		files := c.strList(pa.pos[0])
		return testFunc(func(r *runner) (bool, error) {
			s := suiteOf(r)
			var scripts []*Script
			for _, f := range files {
				src, err := os.ReadFile(filepath.Join(s.dir, f.eval(r)))
				if err != nil {
					return false, nil
				}
				sc, err := Compile(src, s.options())
				if err != nil {
					s.errs = errorStrings(err)
					return false, nil
				}
				scripts = append(scripts, sc)
			}
			res, err := RunSequence(r.ctx, scripts, r.msg, *r.env, r.host)
			if err != nil {
				s.errs = []string{err.Error()}
				return false, nil
			}
			return executeResultOf(r, res), nil
		})
	})
	regT("test_error", compileTestError)
	varNamespaces["tst"] = struct {
		ext     string
		resolve func(c *compiler, name string) strPart
	}{testsuiteExt, func(c *compiler, name string) strPart { return strPart{kind: pLit, lit: ""} }}
}

type cmdFunc func(r *runner) error

func (f cmdFunc) exec(r *runner) error { return f(r) }

type testFunc func(r *runner) (bool, error)

func (f testFunc) eval(r *runner) (bool, error) { return f(r) }

func compileTestBlock(c *compiler, n *node) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.positional(n, pa, aString) || !n.hasBlock {
		c.errf(n.pos, "test needs a name and a block")
		return nil
	}
	name := pa.pos[0].strs[0].s
	block := c.block(n.block, false)
	return cmdFunc(func(r *runner) error {
		s := suiteOf(r)
		resetResult(r)
		s.smtp = nil
		clear(s.seen)
		s.inTest = true
		err := r.execBlock(block)
		s.inTest = false
		res := blockResult{name: name}
		var tf *testFail
		switch {
		case err == nil, err == errStop:
		case errors.As(err, &tf):
			res.fail = tf.msg
		default:
			res.fail = "runtime error: " + err.Error()
		}
		s.results = append(s.results, res)
		return nil
	})
}

// resetResult empties the result the test commands look at.
func resetResult(r *runner) {
	r.acts, r.cancelled, r.explicitKeep = nil, false, false
	r.nRedirects, r.nActions, r.hadVacation, r.hadReject = 0, 0, false, false
	r.remember, r.dupSeen = nil, nil
	r.flags = nil
}

func setMessage(r *runner, raw []byte) {
	r.msg = NewMessage(raw)
	r.hdr, r.body = nil, nil
}

func compileTestSet(c *compiler, n *node) cmd {
	pa, ok := c.args(n, nil)
	if !ok || !c.positional(n, pa, aString, aString) {
		return nil
	}
	k, v := c.str(pa.pos[0].strs[0]), c.str(pa.pos[1].strs[0])
	return cmdFunc(func(r *runner) error {
		key, val := strings.ToLower(k.eval(r)), v.eval(r)
		switch key {
		case "message":
			setMessage(r, []byte(val))
			// Pigeonhole's testsuite derives the envelope from the message.
			first := func(names ...string) string {
				for _, n := range names {
					if v := r.msg.Header(n); len(v) > 0 {
						if l, _ := parseAddressList(v[0]); len(l) > 0 && l[0].local != "" {
							return l[0].all()
						}
					}
				}
				return ""
			}
			r.env.To = first("envelope-to", "to")
			if r.env.To == "" {
				r.env.To = "recipient@example.com"
			}
			r.env.OrigTo = r.env.To
			r.env.From = first("return-path", "sender", "from")
			if r.env.From == "" {
				r.env.From = "sender@example.com"
			}
		case "envelope.from":
			r.env.From = strings.TrimSpace(strings.Trim(val, "<>"))
		case "envelope.to":
			r.env.To = strings.Trim(val, "<>")
		case "envelope.orig_to":
			r.env.OrigTo = strings.Trim(val, "<>")
		case "envelope.auth":
			r.env.Auth = val
		default:
			return r.errorf(n.pos, "test_set: unknown object %q", key)
		}
		return nil
	})
}

func compileTestMessage(c *compiler, n *node) test {
	pa, ok := c.args(n, []tagSpec{{name: "smtp", group: "source"}, {name: "folder", param: aString, group: "source"}})
	if !ok || !c.positional(n, pa, aNumber) {
		return nil
	}
	idx := int(pa.pos[0].num)
	var folder *strExpr
	if a, ok := pa.tags["folder"]; ok {
		folder = c.str(a.strs[0])
	}
	return testFunc(func(r *runner) (bool, error) {
		s := suiteOf(r)
		if folder == nil {
			if idx >= len(s.smtp) {
				return false, nil
			}
			m := s.smtp[idx]
			setMessage(r, m.raw)
			r.env.From, r.env.To = m.from, m.to
			return true, nil
		}
		box := s.mailboxes[NormalizeMailbox(folder.eval(r))]
		if idx >= len(box) {
			return false, nil
		}
		setMessage(r, box[idx].raw)
		r.flags = box[idx].flags
		return true, nil
	})
}

func (s *suite) editHeaderOptions() EditHeaderOptions {
	n, _ := strconv.Atoi(s.config["sieve_editheader_max_header_size"])
	return EditHeaderOptions{
		Protected:     strings.Fields(s.config["sieve_editheader_protected"]),
		ForbidAdd:     strings.Fields(s.config["sieve_editheader_forbid_add"]),
		ForbidDelete:  strings.Fields(s.config["sieve_editheader_forbid_delete"]),
		MaxHeaderSize: n,
	}
}

func (s *suite) redirectOptions() RedirectOptions {
	return RedirectOptions{EnvelopeFrom: s.config["sieve_redirect_envelope_from"], UserEmail: s.config["sieve_user_email"]}
}

func (s *suite) vacationOptions() VacationOptions {
	yes := func(k string) bool { return s.config[k] == "yes" }
	n, _ := strconv.Atoi(s.config["sieve_vacation_max_subject_codepoints"])
	return VacationOptions{
		DefaultSubject:         s.config["sieve_vacation_default_subject"],
		DefaultSubjectTemplate: s.config["sieve_vacation_default_subject_template"],
		MaxSubjectRunes:        n,
		UserEmail:              s.config["sieve_user_email"],
		UseOriginalRecipient:   yes("sieve_vacation_use_original_recipient"),
		DontCheckRecipient:     yes("sieve_vacation_dont_check_recipient"),
		ToHeaderIgnoreEnvelope: yes("sieve_vacation_to_header_ignore_envelope"),
	}
}

// suiteOptions are the compile options of scripts the suite compiles.
func (s *suite) options() Options {
	opt := Options{Include: func(loc Location, name string) ([]byte, error) {
		dir := "included"
		if loc == Global {
			dir = "included-global"
		}
		return os.ReadFile(filepath.Join(s.dir, dir, name+".sieve"))
	}}
	if v, err := strconv.Atoi(s.config["sieve_variables_max_variable_size"]); err == nil {
		opt.Limits.MaxVariableSize = v
	}
	opt.Delimiter = s.config["recipient_delimiter"]
	opt.Vacation = s.vacationOptions()
	opt.EditHeader = s.editHeaderOptions()
	if v, err := strconv.Atoi(s.config["sieve_include_max_includes"]); err == nil {
		opt.Limits.MaxIncludes = v
	}
	if v, err := strconv.Atoi(s.config["sieve_include_max_nesting_depth"]); err == nil {
		opt.Limits.MaxIncludeDepth = v
	}
	return opt
}

func compileTestScriptCompile(c *compiler, n *node) test {
	pa, ok := c.args(n, nil)
	if !ok || !c.positional(n, pa, aString) {
		return nil
	}
	path := c.str(pa.pos[0].strs[0])
	return testFunc(func(r *runner) (bool, error) {
		s := suiteOf(r)
		s.errs, s.compiled = nil, nil
		src, err := os.ReadFile(filepath.Join(s.dir, path.eval(r)))
		if err != nil {
			s.errs = []string{err.Error()}
			return false, nil
		}
		sc, err := Compile(src, s.options())
		if err != nil {
			// Pigeonhole ends a failed compile with one more error line.
			s.errs = append(errorStrings(err), "validation failed")
			return false, nil
		}
		s.compiled = sc
		return true, nil
	})
}

func errorStrings(err error) []string {
	var l ErrorList
	if errors.As(err, &l) {
		var out []string
		for _, e := range l {
			out = append(out, e.Msg) // test_error sees messages without their position
		}
		return out
	}
	var ce *CompileError
	if errors.As(err, &ce) {
		return []string{ce.Msg}
	}
	return []string{err.Error()}
}

func compileTestScriptRun(c *compiler, n *node) test {
	pa, ok := c.args(n, []tagSpec{{name: "append_result"}})
	if !ok || !c.positional(n, pa) {
		return nil
	}
	appendRes := pa.has("append_result")
	return testFunc(func(r *runner) (bool, error) {
		s := suiteOf(r)
		s.errs = nil
		if s.compiled == nil {
			s.errs = []string{"no script compiled"}
			return false, nil
		}
		if !appendRes {
			resetResult(r)
		}
		sub := &runner{ctx: r.ctx, s: s.compiled, msg: r.msg, env: r.env, host: r.host,
			vars: make([]string, s.compiled.nvars), deadline: time.Now().Add(s.compiled.lim.MaxCPU),
			hdr: r.hdr, body: r.body, matchBudget: 100_000_000}
		sub.acts, sub.cancelled, sub.explicitKeep = r.acts, r.cancelled, r.explicitKeep
		sub.nRedirects, sub.nActions, sub.hadVacation, sub.hadReject = r.nRedirects, r.nActions, r.hadVacation, r.hadReject
		sub.remember, sub.dupSeen, sub.flags = r.remember, r.dupSeen, r.flags
		err := sub.runScript(s.compiled)
		s.errs = append(s.errs, sub.warnings...)
		if err != nil && err != errStop {
			s.errs = append(s.errs, err.Error())
			resetResult(r)
			return false, nil
		}
		r.acts, r.cancelled, r.explicitKeep = sub.acts, sub.cancelled, sub.explicitKeep
		r.nRedirects, r.nActions, r.hadVacation, r.hadReject = sub.nRedirects, sub.nActions, sub.hadVacation, sub.hadReject
		r.remember, r.dupSeen, r.flags = sub.remember, sub.dupSeen, sub.flags
		r.hdr = sub.hdr
		return true, nil
	})
}

// actionNames are the names Pigeonhole's test_result_action knows.
func testActionName(a Action) string {
	switch x := a.(type) {
	case Keep:
		return "keep"
	case FileInto:
		_ = x
		return "store"
	}
	return actionName(a)
}

func compileTestResultAction(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch([]tagSpec{{name: "index", param: aNumber}}))
	if !ok || !c.positional(n, pa, aStringList) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[0])
	if m == nil {
		return nil
	}
	idx := 0
	if a, ok := pa.tags["index"]; ok {
		idx = int(a.num)
	}
	return testFunc(func(r *runner) (bool, error) {
		var names []string
		for _, a := range r.acts {
			names = append(names, testActionName(a))
		}
		if idx > 0 {
			if idx > len(names) {
				return false, nil
			}
			names = names[idx-1 : idx]
		}
		return m.matchValues(r, names)
	})
}

func compileTestError(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch([]tagSpec{{name: "index", param: aNumber}}))
	if !ok || !c.positional(n, pa, aStringList) {
		return nil
	}
	m := c.matcher(n, pa, pa.pos[0])
	if m == nil {
		return nil
	}
	idx := 0
	if a, ok := pa.tags["index"]; ok {
		idx = int(a.num)
	}
	return testFunc(func(r *runner) (bool, error) {
		errs := suiteOf(r).errs
		if idx > 0 {
			if idx > len(errs) {
				return false, nil
			}
			errs = errs[idx-1 : idx]
		}
		return m.matchValues(r, errs)
	})
}

// executeResult performs the current result against the suite's mail store and outbox.
func executeResult(r *runner) bool { return executeResultOf(r, r.result()) }

// executeResultOf performs res against the suite's mail store and outbox.
func executeResultOf(r *runner, res *Result) bool {
	s := suiteOf(r)
	orig, _ := readAll(r.msg)
	var raw []byte
	edited := func(h []byte) {
		raw = orig
		if h != nil {
			_, body := splitMessage(orig)
			raw = append(append([]byte(nil), h...), body...)
		}
	}
	ok := true
	store := func(box string, flags []string, create bool) {
		// The suite's mail store, like Dovecot's, separates hierarchy levels with "/":
		// an empty level is no valid name.
		if strings.Contains(box, "//") || strings.HasPrefix(box, "/") || strings.HasSuffix(box, "/") {
			s.errs = append(s.errs, fmt.Sprintf("failed to store into mailbox '%s': Invalid mailbox name: empty hierarchy level", box))
			ok = false
			return
		}
		if _, exists := s.mailboxes[NormalizeMailbox(box)]; !exists && !create && NormalizeMailbox(box) != "INBOX" {
			s.errs = append(s.errs, fmt.Sprintf("failed to store into mailbox '%s': Mailbox doesn't exist: %s", box, box))
			ok = false
			return
		}
		box = NormalizeMailbox(box)
		s.mailboxes[box] = append(s.mailboxes[box], stored{raw: raw, flags: flags})
	}
	for _, a := range res.Actions {
		switch x := a.(type) {
		case Keep:
			edited(x.Header)
			store("INBOX", x.Flags, true)
		case FileInto:
			edited(x.Header)
			store(x.Mailbox, x.Flags, x.Create)
		case Redirect:
			// Sent as the delivery sends it: a loop is not sent (and not an error).
			if from, msg, err := x.Compose(orig, *r.env, s.redirectOptions()); err == nil {
				s.smtp = append(s.smtp, sentMail{from: from, to: x.Address, raw: msg})
			} else if !errors.Is(err, ErrRedirectLoop) {
				s.errs = append(s.errs, err.Error())
				ok = false
			}
		case Vacation:
			if x.Skip == "" {
				s.smtp = append(s.smtp, sentMail{from: "", to: x.To, raw: x.Compose(r.env.To, time.Now(), "<test@example.com>")})
			}
		case Reject:
			if r.env.From != "" {
				s.smtp = append(s.smtp, sentMail{from: "", to: r.env.From, raw: []byte("From: Postmaster <postmaster@example.com>\r\nTo: " + r.env.From + "\r\nSubject: Rejected: \r\n\r\n" + x.Reason)})
			}
		}
	}
	if !ok {
		// A failed action falls back to the implicit keep of the original message
		// (as Pigeonhole does).
		edited(nil)
		store("INBOX", nil, true)
	}
	for _, m := range res.Remember {
		s.seen[m.Key] = time.Now()
	}
	return ok
}

func readAll(m Message) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(m.Raw())
	return b.Bytes(), err
}

// suiteHost is the Host of the suite: its mail store and memory.
type suiteHost struct{ s *suite }

func (h suiteHost) MailboxExists(_ context.Context, name string) bool {
	_, ok := h.s.mailboxes[name]
	return ok || strings.EqualFold(name, "INBOX")
}

func (h suiteHost) Seen(_ context.Context, key string, period time.Duration) bool {
	t, ok := h.s.seen[key]
	return ok && time.Since(t) < period
}

func (h suiteHost) Now() time.Time { return time.Now() }

func (h suiteHost) SpamScore(context.Context) (float64, bool) {
	ratio, ok := h.s.score("spamtest", 10)
	return ratio * 100, ok
}

func (h suiteHost) VirusScore(context.Context) (int, bool) {
	ratio, ok := h.s.score("virustest", 5)
	return int(ratio*4 + 1.001), ok
}

// score reads a spam or virus score from the message as Pigeonhole's
// sieve_spamtest_* / sieve_virustest_* settings say (ext-spamvirustest-common.c).
func (s *suite) score(ext string, textMax int) (float64, bool) {
	cfg := func(k string) (string, bool) { v, ok := s.config["sieve_"+ext+"_"+k]; return v, ok }
	status, ok := cfg("status_header")
	if !ok || s.cur == nil {
		return 0, false
	}
	typ, _ := cfg("status_type")
	if typ == "" {
		typ = "score"
	}
	header := func(spec string) (string, bool) {
		name, re, hasRE := strings.Cut(spec, ":")
		name = strings.TrimSpace(name)
		v := s.cur.header(name)
		if len(v) == 0 {
			return "", false
		}
		val := decodeHeader(v[0])
		if !hasRE {
			return val, true
		}
		rx, err := regexp.Compile(strings.TrimSpace(re))
		if err != nil {
			return "", false
		}
		m := rx.FindStringSubmatch(val)
		if len(m) < 2 {
			return "", false
		}
		return m[1], true
	}
	var maxv float64
	if typ == "text" {
		maxv = float64(textMax)
	} else {
		mh, hasMH := cfg("max_header")
		mv, hasMV := cfg("max_value")
		switch {
		case hasMH && !hasMV:
			v, ok := header(mh)
			if !ok {
				return 0, false
			}
			if maxv, ok = parseDecimal(v); !ok {
				return 0, false
			}
		case hasMV && !hasMH:
			if maxv, ok = parseDecimal(mv); !ok {
				return 0, false
			}
		default:
			return 0, false
		}
		if maxv == 0 {
			return 0, false
		}
	}
	st, ok := header(status)
	if !ok {
		return 0, false
	}
	var val float64
	switch typ {
	case "score":
		if val, ok = parseDecimal(st); !ok {
			return 0, false
		}
	case "strlen":
		if st != "" && strings.Trim(st, st[:1]) != "" {
			return 0, false
		}
		val = float64(len(st))
	case "text":
		found := false
		for i := 0; i <= textMax; i++ {
			if v, ok := cfg("text_value" + strconv.Itoa(i)); ok && v != "" && v == st {
				val, found = float64(i), true
				break
			}
		}
		if !found {
			return 0, false
		}
	default:
		return 0, false
	}
	return min(max(val/maxv, 0), 1), true
}

func parseDecimal(s string) (float64, bool) {
	s = strings.Replace(s, ",", ".", 1)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil && s != "" && !strings.ContainsAny(s, "eEx")
}

var testBlockRE = regexp.MustCompile(`(?m)^\s*test\s+"((?:[^"\\]|\\.)*)"`)
