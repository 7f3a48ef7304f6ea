package imapd

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"

	"github.com/portcullis-mail/portcullis/store"
)

// SORT (RFC 5256 §3) and DISPLAYFROM/DISPLAYTO (RFC 5957).

// sortKey is one sort criterion: ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, DISPLAYFROM,
// DISPLAYTO.
type sortKey struct {
	key     string
	reverse bool
}

// sortItem is what the criteria compare of one message.
type sortItem struct {
	seq, uid         uint32
	arrival, date    time.Time
	size             int64
	subject          string
	reply            bool // the subject was a reply or forward
	from, to, cc     string
	dispFrom, dispTo string
}

// sort answers SORT: the messages matching criteria in the order of keys, ties by
// sequence number (RFC 5256 §3); results are sequence numbers, or UIDs for UID SORT.
// sortItems returns what SORT and THREAD compare of the messages matching criteria, in
// sequence order; needEnv reads the envelopes (dates, subjects, addresses).
func (s *session) sortItems(criteria *imap.SearchCriteria, needEnv bool) ([]sortItem, error) {
	data, _, err := s.search(numSeq, criteria, &imap.SearchOptions{ReturnAll: true})
	if err != nil {
		return nil, err
	}
	sel, err := s.selected()
	if err != nil {
		return nil, err
	}
	all, _ := data.All.(imap.SeqSet)
	seqs, _ := all.Nums()
	items := make([]sortItem, 0, len(seqs))
	uids := make([]uint32, 0, len(seqs))
	for _, seq := range seqs {
		if int(seq) <= len(sel.uids) {
			uids = append(uids, sel.uids[seq-1])
		}
	}
	c, cancel := ctx()
	defer cancel()
	// Envelopes not in the server's cache are made by parsing the message headers, as
	// FETCH ENVELOPE makes them, and within FETCH's bounds: one command's parse work
	// (max_fetch_parse_size, NO [LIMIT] beyond) and the server's fetch_memory, a share
	// held while a header is parsed (NO [UNAVAILABLE] when there is no room). Before,
	// SORT parsed without either: a SORT over a large mailbox after a restart parsed
	// every header, outside the budget every FETCH waits for. The deferred release gives
	// the share back on every way out, a panic's too.
	cmd := &fetchCmd{maxWork: int64(s.srv.cfg.MaxFetchParseSize), name: "SORT"}
	h := &hold{b: s.srv.mem}
	defer h.resize(0)
	for start := 0; start < len(uids); start += 256 {
		end := min(start+256, len(uids))
		msgs, err := s.user.MessagesByUIDWithoutEnvelope(c, sel.mb, uids[start:end])
		if err != nil {
			return nil, s.logErr("sort", err)
		}
		byUID := make(map[uint32]store.Message, len(msgs))
		var noEnv []uint32
		for _, m := range msgs {
			byUID[m.UID] = m
			if needEnv && s.cachedEnvelope(m) == nil {
				noEnv = append(noEnv, m.UID)
			}
		}
		if len(noEnv) > 0 {
			// The index keeps the envelopes made before (CacheEnvelope): read, not parsed
			// again, as FETCH does.
			full, err := s.user.MessagesByUID(c, sel.mb, noEnv)
			if err != nil {
				return nil, s.logErr("sort", err)
			}
			for _, m := range full {
				byUID[m.UID] = m
			}
		}
		for i := start; i < end; i++ {
			m, ok := byUID[uids[i]]
			if !ok {
				continue // expunged meanwhile
			}
			it := sortItem{seq: uint32(sel.seqOf(m.UID)), uid: m.UID, arrival: m.InternalDate, size: m.SizeCRLF}
			if needEnv {
				if err := s.sortEnvelope(sel.mb, m, &it, cmd, h); err != nil {
					s.srv.rlog.Info("imap sort", "user", s.user.Name(), "err", err)
					return nil, err
				}
			}
			items = append(items, it)
		}
	}
	return items, nil
}

func (s *session) sort(kind numKind, keys []sortKey, criteria *imap.SearchCriteria) ([]uint32, error) {
	needEnv := slices.ContainsFunc(keys, func(k sortKey) bool { return k.key != "ARRIVAL" && k.key != "SIZE" })
	items, err := s.sortItems(criteria, needEnv)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(items, func(a, b sortItem) int {
		for _, k := range keys {
			var r int
			switch k.key {
			case "ARRIVAL":
				r = a.arrival.Compare(b.arrival)
			case "DATE":
				r = a.date.Compare(b.date)
			case "SIZE":
				r = cmp.Compare(a.size, b.size)
			case "SUBJECT":
				r = strings.Compare(a.subject, b.subject)
			case "FROM":
				r = strings.Compare(a.from, b.from)
			case "TO":
				r = strings.Compare(a.to, b.to)
			case "CC":
				r = strings.Compare(a.cc, b.cc)
			case "DISPLAYFROM":
				r = strings.Compare(a.dispFrom, b.dispFrom)
			case "DISPLAYTO":
				r = strings.Compare(a.dispTo, b.dispTo)
			}
			if k.reverse {
				r = -r
			}
			if r != 0 {
				return r
			}
		}
		return cmp.Compare(a.seq, b.seq)
	})
	out := make([]uint32, len(items))
	for i, it := range items {
		out[i] = it.seq
		if kind == numUID {
			out[i] = it.uid
		}
	}
	return out, nil
}

// sortEnvelope fills the keys that come from the header, from the envelope (cached, or
// made from the message's header within cmd's work limit and h's share of the memory
// budget). The error ends the command: over the work limit, or no room in the budget;
// a message that cannot be parsed sorts as one without header fields.
func (s *session) sortEnvelope(mb store.Mailbox, m store.Message, it *sortItem, cmd *fetchCmd, h *hold) error {
	env := s.cachedEnvelope(m)
	if env == nil {
		if err := cmd.overLimit(); err != nil {
			return err
		}
		mf := &msgFile{s: s, mb: mb, m: m, cmd: cmd, hold: h}
		t, err := mf.structure(false)
		mf.close()
		if ie := (*imap.Error)(nil); errors.As(err, &ie) {
			return err // the budget's NO [UNAVAILABLE]
		}
		if err != nil {
			env = &envelope{}
		} else {
			env = s.envelope(mb, m.UID, m.Key, t.root)
		}
	}
	// RFC 5256 §3: the sent date, or the internal date when there is none; in UTC.
	it.date = env.Date
	if it.date.IsZero() {
		it.date = m.InternalDate
	}
	it.subject, it.reply = baseSubjectReply(env.Subject)
	it.from, it.dispFrom = firstMailbox(env.From), displayName(env.From)
	it.to, it.dispTo = firstMailbox(env.To), displayName(env.To)
	it.cc = firstMailbox(env.Cc)
	return nil
}

// firstAddress is the first address of a list; a group's start marker counts, with the
// group's name as its mailbox (as Dovecot sorts "Cc: group: a@b;" by "group").
func firstAddress(l []address) *address {
	if len(l) == 0 {
		return nil
	}
	return &l[0]
}

// firstMailbox is the local part of the first address, folded for comparison (RFC 5256
// §3: addr-mailbox, compared with i;unicode-casemap).
func firstMailbox(l []address) string {
	if a := firstAddress(l); a != nil {
		return fold(a.Mailbox)
	}
	return ""
}

// displayName is the display name of the first address, or its address when it has none
// (RFC 5957 §3), folded.
func displayName(l []address) string {
	a := firstAddress(l)
	switch {
	case a == nil:
		return ""
	case a.Name != "":
		return fold(a.Name)
	case a.Host == "" || a.Host == missingDomain:
		return fold(a.Mailbox) // a group's name, or an address without a domain
	}
	return fold(a.Mailbox + "@" + a.Host)
}

// fold approximates i;unicode-casemap (RFC 5051): case folded by upper-casing, as the
// titlecase mapping it asks for agrees with it on the scripts that have case.
func fold(s string) string { return strings.ToUpper(s) }

// baseSubject extracts the base subject (RFC 5256 §2.1) from a decoded subject, folded.
func baseSubject(subj string) string {
	b, _ := baseSubjectReply(subj)
	return b
}

// baseSubjectReply is baseSubject, and whether the subject was a reply or forward (a
// leader, a "(fwd)" trailer or a "[fwd: ]" wrapper was removed: RFC 5256 §2.1).
func baseSubjectReply(subj string) (base string, reply bool) {
	// (1) whitespace runs become one space (the subject is already decoded).
	s := strings.Join(strings.FieldsFunc(subj, unicode.IsSpace), " ")
	for {
		// (2) remove trailing "(fwd)" and whitespace.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				s = t[:len(t)-5]
				reply = true
				continue
			}
			s = t
			break
		}
		// (3)-(5) remove leaders (re:, fw:, fwd: with blobs) and a leading blob that
		// does not make the subject empty, until nothing changes.
		for {
			before := s
			s = strings.TrimLeft(s, " ")
			if t, ok := trimRefwd(s); ok {
				s = t
				reply = true
			}
			if t := trimBlob(s); t != s && strings.TrimSpace(t) != "" {
				s = t
			}
			if s == before {
				break
			}
		}
		// (6) "[fwd: ... ]" wrapping: take the inside and start again.
		if len(s) > 6 && strings.EqualFold(s[:5], "[fwd:") && strings.HasSuffix(s, "]") {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		break
	}
	return fold(strings.TrimSpace(s)), reply
}

// trimBlob removes a leading subj-blob: "[" *BLOBCHAR "]" *WSP.
func trimBlob(s string) string {
	if !strings.HasPrefix(s, "[") {
		return s
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return s
	}
	return strings.TrimLeft(s[end+2:], " ")
}

// trimRefwd removes a leading subj-refwd with the blobs before it:
// *subj-blob ("re" / "fw" / "fwd") *WSP [subj-blob] ":".
func trimRefwd(s string) (string, bool) {
	t := s
	for {
		b := trimBlob(t)
		if b == t {
			break
		}
		t = b
	}
	low := strings.ToLower(t)
	var n int
	switch {
	case strings.HasPrefix(low, "fwd"):
		n = 3
	case strings.HasPrefix(low, "fw"), strings.HasPrefix(low, "re"):
		n = 2
	default:
		return s, false
	}
	t = strings.TrimLeft(t[n:], " ")
	t = trimBlob(t)
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}
