package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SourceFolder is a folder at the source.
type SourceFolder struct {
	// Name is the folder's name with levels separated by '/', decoded to UTF-8
	// (modified UTF-7 at the source, RFC 3501 §5.1.3), INBOX for the inbox.
	Name string
	// SpecialUse is the RFC 6154 attribute the source announces (`\Sent`...), or "".
	SpecialUse string
	Subscribed bool
	// NoSelect folders only hold others: created at the target, nothing copied.
	NoSelect bool
	// UIDValidity is the folder's UIDVALIDITY, 0 when the source has none (mbox). Set by
	// Source.Messages.
	UIDValidity uint32
	// ref is the source's own handle for the folder (its raw IMAP name, its directory).
	ref string
}

// SourceMessage is one message at the source, as listed before it is copied.
type SourceMessage struct {
	// ID identifies the message within its folder and UIDVALIDITY epoch: the IMAP UID,
	// the maildir key, the mbox message's SHA-256 and occurrence.
	ID    string
	UID   uint32 // the IMAP UID at the source, 0 when unknown
	Flags []string
	Date  time.Time
	Size  int64  // as listed (RFC822.SIZE, file size); the copy counts the real bytes
	UIDL  string // the POP3 unique-id at the source, "" when unknown
	seq   uint32 // IMAP sequence number when listed
}

// Source lists and reads a user's mail at the old system.
type Source interface {
	// Folders lists every folder, INBOX included.
	Folders(ctx context.Context) ([]SourceFolder, error)
	// Messages lists a folder's messages in ascending order and sets f.UIDValidity.
	Messages(ctx context.Context, f *SourceFolder) ([]SourceMessage, error)
	// Fetch calls fn with each of msgs (listed by Messages for f, which was the last
	// folder listed) and a reader of its exact bytes, in order. A message that vanished
	// meanwhile is skipped.
	Fetch(ctx context.Context, f SourceFolder, msgs []SourceMessage, fn func(SourceMessage, io.Reader) error) error
	Close() error
}

// TargetFolder is a folder at the target.
type TargetFolder struct {
	Name        string
	SpecialUse  string
	UIDValidity uint32
	UIDNext     uint32
}

// TargetMessage is one message at the target.
type TargetMessage struct {
	UID   uint32
	Size  int64
	Flags []string
}

// Target is one user's mailboxes at the new system (migrate/storetarget implements it over
// portcullis's store). Folder names are '/'-separated.
type Target interface {
	Folders(ctx context.Context) ([]TargetFolder, error)
	// Create makes a folder and its parents; an existing folder is no error.
	Create(ctx context.Context, name, specialUse string) error
	Subscribe(ctx context.Context, name string) error
	Folder(ctx context.Context, name string) (TargetFolder, error)
	// KeepUIDs gives an empty, never used folder the source's UIDVALIDITY; it reports
	// whether it did.
	KeepUIDs(ctx context.Context, name string, uidValidity uint32) (bool, error)
	// Prepare stores a message's bytes durably with m's flags and date, not yet visible;
	// its UID will be at least wantUID. Several may run at once.
	Prepare(ctx context.Context, folder string, r io.Reader, m SourceMessage, wantUID uint32) (Prepared, error)
	// Commit makes prepared messages visible in the given order (ascending UIDs), with
	// m's UIDL, and returns their UIDs or errors.
	Commit(ctx context.Context, folder string, ps []Prepared) ([]uint32, []error)
	Messages(ctx context.Context, folder string) ([]TargetMessage, error)
	Open(ctx context.Context, folder string, uid uint32) (io.ReadCloser, error)
	// Repair sets a message's flags, date and UIDL to m's (an adopted interrupted copy).
	Repair(ctx context.Context, folder string, uid uint32, m SourceMessage) error
	SetFlags(ctx context.Context, folder string, uid uint32, flags []string) error
	Remove(ctx context.Context, folder string, uids []uint32) error
}

// Prepared is a Target's handle on a message written but not yet visible.
type Prepared any

// Progress is told how much work there is and how much is done (a progress bar).
type Progress interface {
	AddTotal(n int)
	Add(n int)
}

// Options control a Run.
type Options struct {
	// Source names the source in the state (e.g. "imap://host/user", a maildir path), so
	// one state database can serve several sources. Required.
	Source string
	// TargetUser names the target user in the state. Required.
	TargetUser string
	// Map renames folders: a source folder OLD (and everything below it) becomes NEW.
	Map map[string]string
	// Exclude skips source folders whose name matches one of these.
	Exclude []*regexp.Regexp
	// DryRun reads the source and the state and reports what would be done, changing
	// nothing.
	DryRun bool
	// SyncFlags sets the flags of already copied messages to the source's when they
	// changed there since.
	SyncFlags bool
	// Delete (strict mode) removes, from the target folders this run fills, the messages
	// that are not at the source.
	Delete bool
	// ExpungeGone removes from the target the messages this state copied from the
	// source whose source message is gone since (expunged there), in folders whose
	// UIDVALIDITY this run did not see change; unlike Delete it leaves the target's
	// other messages. A catch-up copy (portcullis user move) then carries expunges over,
	// not only new messages, and a deleted message does not come back.
	ExpungeGone bool
	// KeepUIDs gives new empty target folders the source's UIDVALIDITY and UIDs.
	KeepUIDs bool
	// Batch is the number of messages whose intent is committed at once; default 64.
	Batch int
	// Workers is the number of message files written at once; default 8.
	Workers int
	// Window is the number of messages listed at once from sources that list UIDs first
	// (IMAP); default 5000.
	Window   int
	Progress Progress
	Logger   *slog.Logger
}

// FolderResult is what a Run did to one folder.
type FolderResult struct {
	Source, Target string
	SourceMessages int
	Copied         int   // appended now (or, in a dry run, to be)
	Bytes          int64 // of the copied messages
	Adopted        int   // copies interrupted by a crash, found at the target and kept
	FlagsSynced    int
	Removed        int  // strict mode
	KeptUIDs       bool // the target folder has the source's UIDVALIDITY
	Failed         int
	Err            error
}

// Result is what a Run did.
type Result struct {
	User          string
	Folders       []FolderResult
	Subscriptions int
	Err           error // a failure that stopped the run (per-folder ones are in Folders)
}

// Totals adds up the folders.
func (r Result) Totals() FolderResult {
	var t FolderResult
	for _, f := range r.Folders {
		t.SourceMessages += f.SourceMessages
		t.Copied += f.Copied
		t.Bytes += f.Bytes
		t.Adopted += f.Adopted
		t.FlagsSynced += f.FlagsSynced
		t.Removed += f.Removed
		t.Failed += f.Failed
		if f.Err != nil && t.Err == nil {
			t.Err = f.Err
		}
	}
	return t
}

type nopProgress struct{}

func (nopProgress) AddTotal(int) {}
func (nopProgress) Add(int)      {}

// Run copies src into dst: every folder (created with its special use and
// subscription) and every message the state does not already hold. A folder that fails is
// reported in its FolderResult and the others go on.
func Run(ctx context.Context, src Source, dst Target, st *State, opt Options) (Result, error) {
	if opt.Source == "" || opt.TargetUser == "" {
		return Result{}, errors.New("migrate: Options.Source and Options.TargetUser are required")
	}
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	if opt.Workers <= 0 {
		opt.Workers = 8
	}
	if opt.Window <= 0 {
		opt.Window = 5000
	}
	if opt.Progress == nil {
		opt.Progress = nopProgress{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	res := Result{User: opt.TargetUser}
	folders, err := src.Folders(ctx)
	if err != nil {
		return res, err
	}
	tfolders, err := dst.Folders(ctx)
	if err != nil {
		return res, err
	}
	plan := planFolders(folders, tfolders, opt)
	for _, p := range plan {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if !opt.DryRun {
			if err := dst.Create(ctx, p.target, p.use); err != nil {
				res.Folders = append(res.Folders, FolderResult{Source: p.src.Name, Target: p.target, Err: err})
				continue
			}
			if p.src.Subscribed {
				if err := dst.Subscribe(ctx, p.target); err != nil {
					return res, err
				}
			}
		}
		if p.src.Subscribed {
			res.Subscriptions++
		}
		if p.src.NoSelect {
			continue
		}
		r := runFolder(ctx, src, dst, st, opt, p)
		if r.Err != nil {
			opt.Logger.Error("migrate: folder failed", "user", opt.TargetUser, "folder", p.src.Name, "err", r.Err)
			if ctx.Err() != nil {
				res.Folders = append(res.Folders, r)
				return res, ctx.Err()
			}
		}
		res.Folders = append(res.Folders, r)
	}
	return res, nil
}

// folderPlan says where a source folder goes.
type folderPlan struct {
	src    SourceFolder
	target string
	use    string
}

// commonNames are the folder names clients and servers use for the special-use folders,
// for sources that announce none (RFC 6154 §5 leaves discovery to the server).
var commonNames = map[string]string{
	"sent": `\Sent`, "sent items": `\Sent`, "sent messages": `\Sent`, "sent mail": `\Sent`, "gesendet": `\Sent`, "envoyés": `\Sent`, "gesendete objekte": `\Sent`,
	"drafts": `\Drafts`, "draft": `\Drafts`, "entwürfe": `\Drafts`, "brouillons": `\Drafts`,
	"junk": `\Junk`, "spam": `\Junk`, "junk e-mail": `\Junk`, "junk email": `\Junk`, "bulk mail": `\Junk`,
	"trash": `\Trash`, "deleted items": `\Trash`, "deleted messages": `\Trash`, "papierkorb": `\Trash`, "corbeille": `\Trash`, "bin": `\Trash`,
	"archive": `\Archive`, "archives": `\Archive`, "archiv": `\Archive`,
}

func planFolders(folders []SourceFolder, tfolders []TargetFolder, opt Options) []folderPlan {
	announced := false
	for _, f := range folders {
		if f.SpecialUse != "" {
			announced = true
		}
	}
	byUse := map[string]string{}
	for _, t := range tfolders {
		if t.SpecialUse != "" {
			if _, ok := byUse[t.SpecialUse]; !ok {
				byUse[t.SpecialUse] = t.Name
			}
		}
	}
	var plan []folderPlan
	usedUse := map[string]bool{}
	for _, f := range folders {
		excluded := false
		for _, re := range opt.Exclude {
			if re.MatchString(f.Name) {
				excluded = true
			}
		}
		if excluded {
			continue
		}
		if !announced && !strings.Contains(f.Name, "/") {
			f.SpecialUse = commonNames[strings.ToLower(f.Name)]
		}
		target, mapped := mapName(f.Name, opt.Map)
		use := f.SpecialUse
		if use != "" && usedUse[use] {
			use = "" // one folder per use
		}
		if use != "" {
			usedUse[use] = true
			if t, ok := byUse[use]; ok && !mapped {
				target = t
			}
		}
		plan = append(plan, folderPlan{src: f, target: target, use: use})
	}
	// Parents before children, INBOX first.
	sort.SliceStable(plan, func(i, j int) bool {
		a, b := plan[i].target, plan[j].target
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	return plan
}

// mapName applies the longest matching OLD=NEW rule and makes every level a valid target
// name.
func mapName(name string, m map[string]string) (string, bool) {
	best, mapped := "", false
	for old, nw := range m {
		if nw != "" && (name == old || strings.HasPrefix(name, old+"/")) && len(old) >= len(best) {
			best, mapped = old, true
		}
	}
	if mapped {
		name = m[best] + name[len(best):]
	}
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", mapped
	}
	levels := strings.Split(name, "/")
	out := levels[:0]
	for _, l := range levels {
		l = strings.Map(func(r rune) rune {
			// The store's folder names live in Maildir++ directory names (".A.B").
			if r < 0x20 || r == 0x7f || r == '.' || r == '\\' || r == '*' || r == '%' || (r >= 0x80 && r < 0xa0) {
				return '_'
			}
			return r
		}, l)
		if l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "_", mapped
	}
	if strings.EqualFold(out[0], "INBOX") {
		out[0] = "INBOX"
	}
	return strings.Join(out, "/"), mapped
}

// flagKey is the comparable form of a flag set: system flags case-folded, keywords as
// they are, sorted.
func flagKey(flags []string) string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if strings.EqualFold(f, `\Recent`) {
				continue
			}
			f = strings.ToLower(f)
		}
		out = append(out, f)
	}
	sort.Strings(out)
	return strings.Join(slices.Compact(out), " ")
}

func runFolder(ctx context.Context, src Source, dst Target, st *State, opt Options, p folderPlan) (r FolderResult) {
	r = FolderResult{Source: p.src.Name, Target: p.target}
	sf := p.src
	// A source that lists UIDs first is processed a window at a time: memory then holds
	// 4 bytes per message of the folder, not its whole listing and state.
	wl, windowed := src.(windowLister)
	var uids []uint32
	var msgs []SourceMessage
	var err error
	if windowed {
		uids, err = wl.UIDs(ctx, &sf)
		r.SourceMessages = len(uids)
	} else {
		msgs, err = src.Messages(ctx, &sf)
		r.SourceMessages = len(msgs)
	}
	if err != nil {
		r.Err = err
		return r
	}
	fs, err := st.folder(ctx, opt.Source, sf.Name, opt.DryRun)
	if err != nil {
		r.Err = err
		return r
	}
	tkey := opt.TargetUser + "\x00" + p.target
	rekeyed := false
	if sf.UIDValidity != fs.uidValidity && !opt.DryRun {
		if fs.uidValidity != 0 {
			// The source renumbered the folder: match what was copied by content.
			if err := st.rekey(ctx, fs, sf.UIDValidity); err != nil {
				r.Err = err
				return r
			}
			rekeyed = true
		} else if err := st.setUIDValidity(ctx, fs, sf.UIDValidity); err != nil {
			r.Err = err
			return r
		}
		fs.uidValidity = sf.UIDValidity
	}
	if rekeyed && windowed {
		// Rare: matching by content needs the whole folder at once.
		if msgs, err = wl.MessagesOf(ctx, sf, uids); err != nil {
			r.Err = err
			return r
		}
		windowed = false
	}
	if opt.KeepUIDs && !opt.DryRun && sf.UIDValidity != 0 {
		n, err := st.count(ctx, fs)
		if err == nil && n == 0 {
			r.KeptUIDs, err = dst.KeepUIDs(ctx, p.target, sf.UIDValidity)
		}
		if err != nil {
			r.Err = err
			return r
		}
	}
	if tf, err := dst.Folder(ctx, p.target); err == nil && sf.UIDValidity != 0 && tf.UIDValidity == sf.UIDValidity {
		r.KeptUIDs = true
	}
	if !windowed {
		recs, err := st.records(ctx, fs)
		if err == nil {
			err = processMessages(ctx, src, dst, st, fs, sf, p.target, tkey, msgs, recs, rekeyed, opt, &r)
		}
		if err != nil {
			r.Err = err
			return r
		}
	} else {
		for i := 0; i < len(uids); i += opt.Window {
			part, err := wl.MessagesOf(ctx, sf, uids[i:min(i+opt.Window, len(uids))])
			if err != nil {
				r.Err = err
				return r
			}
			ids := make([]string, len(part))
			for j, m := range part {
				ids[j] = m.ID
			}
			recs, err := st.recordsOf(ctx, fs, ids)
			if err == nil {
				err = processMessages(ctx, src, dst, st, fs, sf, p.target, tkey, part, recs, false, opt, &r)
			}
			if err != nil {
				r.Err = err
				return r
			}
		}
	}
	if opt.Delete || opt.ExpungeGone && !rekeyed {
		present := func(id string) bool {
			if windowed {
				n, err := strconv.ParseUint(id, 10, 32)
				_, found := slices.BinarySearch(uids, uint32(n))
				return err == nil && found
			}
			return false
		}
		if !windowed {
			have := make(map[string]bool, len(msgs))
			for _, m := range msgs {
				have[m.ID] = true
			}
			present = func(id string) bool { return have[id] }
		}
		if err := strict(ctx, dst, st, fs, p.target, tkey, present, !opt.Delete, opt.DryRun, &r); err != nil && r.Err == nil {
			r.Err = err
		}
	}
	return r
}

// windowLister is a Source that lists a folder's UIDs first and their messages in parts
// (the IMAP source), so that a large folder is processed a window at a time.
type windowLister interface {
	// UIDs lists the folder's UIDs in ascending order and sets f.UIDValidity.
	UIDs(ctx context.Context, f *SourceFolder) ([]uint32, error)
	// MessagesOf lists the messages among uids that still exist, in UID order.
	MessagesOf(ctx context.Context, f SourceFolder, uids []uint32) ([]SourceMessage, error)
}

// processMessages brings one listing (a folder or a window of one) to the target:
// interrupted copies adopted, new messages copied, flags synchronized.
func processMessages(ctx context.Context, src Source, dst Target, st *State, fs folderState, sf SourceFolder, target, tkey string,
	msgs []SourceMessage, recs map[string]*record, rekeyed bool, opt Options, r *FolderResult) error {
	if !opt.DryRun {
		if err := reconcile(ctx, src, dst, st, fs, sf, target, tkey, msgs, recs, r); err != nil {
			return err
		}
	}
	var todo []SourceMessage
	for _, m := range msgs {
		if rec, ok := recs[m.ID]; !ok || rec.targetUID == 0 {
			todo = append(todo, m)
		}
	}
	opt.Progress.AddTotal(len(todo))
	var err error
	if opt.DryRun {
		r.Copied += len(todo)
		for _, m := range todo {
			r.Bytes += m.Size
		}
		opt.Progress.Add(len(todo))
	} else if rekeyed {
		err = copyByContent(ctx, src, dst, st, fs, sf, target, tkey, todo, recs, opt, r)
	} else {
		err = copyNew(ctx, src, dst, st, fs, sf, target, tkey, todo, opt, r)
	}
	if err != nil || !opt.SyncFlags {
		return err
	}
	for _, m := range msgs {
		rec, ok := recs[m.ID]
		if !ok || rec.targetUID == 0 {
			continue
		}
		if k := flagKey(m.Flags); k != rec.flags {
			if !opt.DryRun {
				if err := dst.SetFlags(ctx, target, rec.targetUID, m.Flags); err != nil {
					return err
				}
				if err := st.setFlags(ctx, fs, m.ID, k); err != nil {
					return err
				}
			}
			r.FlagsSynced++
		}
	}
	return nil
}

// maxBuffered bounds a message held in memory while its file is written in parallel with
// others; larger ones stream from the source into their file.
const maxBuffered = 1 << 20

// copyNew copies msgs in batches: the batch's intents first (one durable commit), then
// the messages' files, written by up to Workers goroutines at once (their fsyncs overlap),
// then one index commit that gives them UIDs in source order, then their records.
func copyNew(ctx context.Context, src Source, dst Target, st *State, fs folderState, sf SourceFolder, target, tkey string,
	msgs []SourceMessage, opt Options, r *FolderResult) error {
	type slot struct {
		m    SourceMessage
		p    Prepared
		hash string
		n    int64
		err  error
	}
	fail := func(m SourceMessage, err error) {
		r.Failed++
		opt.Logger.Error("migrate: message not copied", "user", opt.TargetUser, "folder", sf.Name, "id", m.ID, "err", err)
		if r.Err == nil {
			r.Err = fmt.Errorf("message %s: %w", m.ID, err)
		}
	}
	for len(msgs) > 0 {
		n := min(opt.Batch, len(msgs))
		chunk := msgs[:n]
		msgs = msgs[n:]
		tf, err := dst.Folder(ctx, target)
		if err != nil {
			return err
		}
		if err := st.intend(ctx, fs, tkey, tf.UIDNext, chunk); err != nil {
			return err
		}
		var slots []*slot
		var wg sync.WaitGroup
		sem := make(chan struct{}, opt.Workers)
		prepare := func(s *slot, body io.Reader) {
			h := sha256.New()
			cr := &counter{r: io.TeeReader(body, h)}
			want := uint32(0)
			if r.KeptUIDs {
				want = s.m.UID
			}
			s.p, s.err = dst.Prepare(ctx, target, cr, s.m, want)
			s.hash, s.n = hex.EncodeToString(h.Sum(nil)), cr.n
		}
		ferr := src.Fetch(ctx, sf, chunk, func(m SourceMessage, body io.Reader) error {
			s := &slot{m: m}
			slots = append(slots, s)
			if m.Size <= maxBuffered {
				buf, err := io.ReadAll(io.LimitReader(body, maxBuffered+1))
				if err != nil {
					return err
				}
				if len(buf) <= maxBuffered {
					sem <- struct{}{}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						prepare(s, bytes.NewReader(buf))
					}()
					return nil
				}
				body = io.MultiReader(bytes.NewReader(buf), body)
			}
			prepare(s, body)
			return nil
		})
		wg.Wait()
		var ok []*slot
		var ps []Prepared
		for _, s := range slots {
			if s.err != nil {
				if ctx.Err() == nil {
					fail(s.m, s.err)
				}
				continue
			}
			ok = append(ok, s)
			ps = append(ps, s.p)
		}
		var done []*record
		if len(ps) > 0 {
			uids, errs := dst.Commit(ctx, target, ps)
			for i, s := range ok {
				if errs[i] != nil {
					fail(s.m, errs[i])
					continue
				}
				done = append(done, &record{srcID: s.m.ID, target: tkey, targetUID: uids[i], hash: s.hash, size: s.n, flags: flagKey(s.m.Flags)})
				r.Copied++
				r.Bytes += s.n
			}
			opt.Progress.Add(len(done))
		}
		if err := st.done(context.WithoutCancel(ctx), fs, done); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	// A message error was counted in Failed and kept in r.Err; the folder goes on.
	return nil
}

// appendOne copies one message (Prepare and Commit).
func appendOne(ctx context.Context, dst Target, folder string, body io.Reader, m SourceMessage) (uint32, error) {
	p, err := dst.Prepare(ctx, folder, body, m, 0)
	if err != nil {
		return 0, err
	}
	uids, errs := dst.Commit(ctx, folder, []Prepared{p})
	return uids[0], errs[0]
}

// reconcile finds the copies that a crash interrupted after the append and before their
// UID was recorded: target messages at or above the UIDNEXT recorded with the intent, that
// no record claims, with the same bytes as the intended source message.
func reconcile(ctx context.Context, src Source, dst Target, st *State, fs folderState, sf SourceFolder, target, tkey string,
	msgs []SourceMessage, recs map[string]*record, r *FolderResult) error {
	var pend []SourceMessage
	low := uint32(0)
	for _, m := range msgs {
		if rec, ok := recs[m.ID]; ok && rec.targetUID == 0 && rec.uidnextBefore > 0 {
			pend = append(pend, m)
			if low == 0 || rec.uidnextBefore < low {
				low = rec.uidnextBefore
			}
		}
	}
	if len(pend) == 0 {
		return nil
	}
	tmsgs, err := dst.Messages(ctx, target)
	if err != nil {
		return err
	}
	claimed, err := st.claimed(ctx, tkey)
	if err != nil {
		return err
	}
	bySize := map[int64][]uint32{}
	for _, t := range tmsgs {
		if t.UID >= low && !claimed[t.UID] {
			bySize[t.Size] = append(bySize[t.Size], t.UID)
		}
	}
	if len(bySize) == 0 {
		return nil
	}
	thash := map[uint32]string{}
	var adopted []*record
	var remove []uint32
	// Adopt in source order while the copies' UIDs ascend: a crash can leave written but
	// unindexed files, which the store indexes in file-name order, not the source's. From
	// the first copy out of order on, copies are removed and made again, so the target
	// keeps the source's order (POP3 lists by UID; kept UIDs ascend).
	lastUID, inOrder := uint32(0), true
	err = src.Fetch(ctx, sf, pend, func(m SourceMessage, body io.Reader) error {
		h := sha256.New()
		n, err := io.Copy(h, body)
		if err != nil {
			return err
		}
		sum := hex.EncodeToString(h.Sum(nil))
		for _, uid := range bySize[n] {
			if claimed[uid] {
				continue
			}
			th, ok := thash[uid]
			if !ok {
				if th, err = hashTarget(ctx, dst, target, uid); err != nil {
					return err
				}
				thash[uid] = th
			}
			if th != sum {
				continue
			}
			claimed[uid] = true
			if !inOrder || uid < lastUID {
				inOrder = false
				remove = append(remove, uid)
				return nil
			}
			lastUID = uid
			if err := dst.Repair(ctx, target, uid, m); err != nil {
				return err
			}
			rec := &record{srcID: m.ID, target: tkey, targetUID: uid, hash: sum, size: n, flags: flagKey(m.Flags)}
			recs[m.ID] = rec
			adopted = append(adopted, rec)
			r.Adopted++
			return nil
		}
		// Not copied before the crash: copied again after those adopted, so every later
		// copy must be made again too.
		inOrder = false
		return nil
	})
	if err2 := st.done(context.WithoutCancel(ctx), fs, adopted); err2 != nil {
		return err2
	}
	if err == nil && len(remove) > 0 {
		err = dst.Remove(ctx, target, remove)
	}
	return err
}

func hashTarget(ctx context.Context, dst Target, folder string, uid uint32) (string, error) {
	f, err := dst.Open(ctx, folder, uid)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("migrate: read target message %d of %q: %w", uid, folder, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyByContent copies a folder whose UIDVALIDITY changed at the source: each message is
// spooled to a temporary file and hashed, then either matched with a record of the old
// epoch (same bytes) or appended.
func copyByContent(ctx context.Context, src Source, dst Target, st *State, fs folderState, sf SourceFolder, target, tkey string,
	msgs []SourceMessage, recs map[string]*record, opt Options, r *FolderResult) error {
	pool := map[string][]string{} // hash → "#HASH#n" ids
	for id, rec := range recs {
		if strings.HasPrefix(id, "#") {
			pool[rec.hash] = append(pool[rec.hash], id)
		}
	}
	for h := range pool {
		sort.Strings(pool[h])
	}
	tmp, err := os.CreateTemp("", "portcullis-migrate-*")
	if err != nil {
		return fmt.Errorf("migrate: spool: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	return src.Fetch(ctx, sf, msgs, func(m SourceMessage, body io.Reader) error {
		if err := tmp.Truncate(0); err != nil {
			return err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tmp, h), body)
		if err != nil {
			return fmt.Errorf("migrate: spool: %w", err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if ids := pool[sum]; len(ids) > 0 {
			pool[sum] = ids[1:]
			if err := st.rename(ctx, fs, ids[0], m.ID); err != nil {
				return err
			}
			rec := recs[ids[0]]
			rec.srcID = m.ID
			recs[m.ID] = rec
			delete(recs, ids[0])
			opt.Progress.Add(1)
			return nil
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		tf, err := dst.Folder(ctx, target)
		if err != nil {
			return err
		}
		if err := st.intend(ctx, fs, tkey, tf.UIDNext, []SourceMessage{m}); err != nil {
			return err
		}
		uid, err := appendOne(ctx, dst, target, tmp, m)
		if err != nil {
			return err
		}
		rec := &record{srcID: m.ID, target: tkey, targetUID: uid, hash: sum, size: n, flags: flagKey(m.Flags)}
		recs[m.ID] = rec
		r.Copied++
		r.Bytes += n
		opt.Progress.Add(1)
		return st.done(ctx, fs, []*record{rec})
	})
}

// strict removes from the target folder every message that no record of a present source
// message claims, and forgets the records of messages gone from the source. With
// onlyGone (Options.ExpungeGone) it removes only the copies of messages gone from the
// source, and leaves the messages no record claims.
func strict(ctx context.Context, dst Target, st *State, fs folderState, target, tkey string, present func(string) bool, onlyGone, dry bool, r *FolderResult) error {
	var gone []string
	goneUID := map[uint32]bool{}
	err := st.eachRecord(ctx, fs, func(id string, targetUID uint32) {
		// With onlyGone, a record left from a renumbering ("#HASH#n", matched by content
		// and not found) is not taken as an expunge: the folder changed under the copy.
		if onlyGone && strings.HasPrefix(id, "#") {
			return
		}
		if !present(id) {
			gone = append(gone, id)
			goneUID[targetUID] = true
		}
	})
	if err != nil {
		return err
	}
	claimed, err := st.claimed(ctx, tkey)
	if err != nil {
		return err
	}
	tmsgs, err := dst.Messages(ctx, target)
	if err != nil {
		if dry {
			return nil // the folder is not created in a dry run
		}
		return err
	}
	var remove []uint32
	for _, t := range tmsgs {
		if !onlyGone && !claimed[t.UID] || goneUID[t.UID] {
			remove = append(remove, t.UID)
		}
	}
	r.Removed = len(remove)
	if dry {
		return nil
	}
	if len(remove) > 0 {
		if err := dst.Remove(ctx, target, remove); err != nil {
			return err
		}
	}
	return st.forget(ctx, fs, gone)
}

// counter counts the bytes read through it.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
