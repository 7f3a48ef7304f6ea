package bayes

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/bits"
	"mime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/emersion/go-message/charset"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// TokenizerConfig limits how much of a message the tokenizer reads. Which tokens it
// produces is fixed (the features measured best by cross-validation on the training
// split; docs/bayes-experiments.md), so that every store holds the same kind of
// tokens. The zero value of a field means its default.
type TokenizerConfig struct {
	// MaxMessageSize limits how much of a message is read (default 1MiB).
	MaxMessageSize bytesize.Size `yaml:"max_message_size"`
	// MaxTextSize limits how much decoded text is tokenized (default 256KiB).
	MaxTextSize bytesize.Size `yaml:"max_text_size"`
	// MaxParts is the number of MIME parts visited (default 64).
	MaxParts int `yaml:"max_parts"`
}

// headerFields are the header fields whose words become "name:word" tokens, chosen by
// measurement (10-fold cross-validation on the training split;
// docs/bayes-experiments.md). Received fields are tokenized separately (host names
// and networks).
var headerFields = []string{
	"from", "to", "cc", "subject", "reply-to", "return-path", "sender", "x-mailer",
	"user-agent", "organization", "x-priority", "x-msmail-priority", "list-id",
	"precedence", "mime-version", "content-type", "message-id", "date",
}

// minWord and maxWord bound the length of a word token in bytes; longer words become
// a "skip:" token of their first byte and length in tens.
const (
	minWord = 3
	maxWord = 12
)

// DefaultTokenizerConfig returns the default limits.
func DefaultTokenizerConfig() TokenizerConfig {
	return TokenizerConfig{}.withDefaults()
}

func (c TokenizerConfig) withDefaults() TokenizerConfig {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 1 << 20
	}
	if c.MaxTextSize <= 0 {
		c.MaxTextSize = 256 << 10
	}
	if c.MaxParts <= 0 {
		c.MaxParts = 64
	}
	return c
}

// Fingerprint identifies the tokens the tokenizer produces (the limits do not count):
// a store records it, and one trained by another tokenizer version is refused, since
// its counts would be of other tokens. It is the hash of the description of the token
// options that earlier versions hashed, at the values the tokenizer now always has,
// so that a store trained by version 6 with the default settings stays valid.
func Fingerprint() string { return fingerprint }

var fingerprint = func() string {
	hs := slices.Clone(headerFields)
	slices.Sort(hs)
	h := fnv.New64a()
	// headers, no_header_names, no_received, min_word, max_word, bigrams, html_tags,
	// split_punct, max_received, subject_words; then the kinds that were on
	fmt.Fprintf(h, "v6|%v|false|false|%d|%d|false|false|false|0|false|shapes|rcvddom", hs, minWord, maxWord)
	return fmt.Sprintf("%016x", h.Sum64())
}()

// Tokenizer turns raw messages into tokens. It is safe for concurrent use.
type Tokenizer struct {
	cfg TokenizerConfig
	// fields describes the header fields handled by name, keyed by hashWord of the
	// name (which lower-cases it)
	fields map[uint64]*fieldInfo
	pool   sync.Pool
}

// NewTokenizer returns a tokenizer for cfg.
func NewTokenizer(cfg TokenizerConfig) *Tokenizer {
	cfg = cfg.withDefaults()
	t := &Tokenizer{cfg: cfg, fields: map[uint64]*fieldInfo{}}
	for _, h := range headerFields {
		t.fields[hashWord([]byte(h))] = &fieldInfo{name: h, prefix: h + ":"}
	}
	// Received fields are tokenized by received
	t.fields[hashWord([]byte("received"))] = &fieldInfo{name: "received", received: true}
	t.pool.New = func() any { return &tokState{} }
	return t
}

// Config returns the tokenizer's configuration with defaults filled in.
func (t *Tokenizer) Config() TokenizerConfig { return t.cfg }

// Hashes appends the distinct token hashes of raw to dst (in no particular order).
// Hashing is hashWord of the prefix and the token (lower-cased), stable across runs.
// hashesAll appends the token hashes of raw to dst as they are produced, repeats
// included, in the order of their first occurrences' Hashes: classification
// deduplicates only the few tokens that count (Classifier.score), which is cheaper
// than a set insertion, with its unpredictable branch, per token.
// It also returns how many of them come first from the top-level header fields.
func (t *Tokenizer) hashesAll(dst []uint64, raw []byte) ([]uint64, int) {
	st := t.pool.Get().(*tokState)
	st.reset(false)
	st.set.all = true
	t.walk(st, raw)
	st.set.all = false
	header := st.nheader
	dst = st.set.appendTo(dst)
	t.pool.Put(st)
	return dst, header
}

func (t *Tokenizer) Hashes(dst []uint64, raw []byte) []uint64 {
	dst, _ = t.HashesHeader(dst, raw)
	return dst
}

// HashesHeader is Hashes, the tokens of the top-level header fields first: it also
// returns how many of them there are (they weigh Config.HeaderWeight in scoring).
func (t *Tokenizer) HashesHeader(dst []uint64, raw []byte) ([]uint64, int) {
	st := t.pool.Get().(*tokState)
	st.reset(false)
	t.walk(st, raw)
	header := st.nheader
	dst = st.set.appendTo(dst)
	t.pool.Put(st)
	return dst, header
}

// Tokens returns the distinct tokens of raw as sorted strings, for inspection and tests.
func (t *Tokenizer) Tokens(raw []byte) []string {
	st := &tokState{}
	st.reset(true)
	t.walk(st, raw)
	out := make([]string, 0, len(st.strs))
	for s := range st.strs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// HashToken returns the hash of one token as Tokens prints it.
func HashToken(tok string) uint64 {
	if strings.HasPrefix(tok, shapePrefix) {
		return hashCase([]byte(tok))
	}
	return tokenHash([]byte(tok))
}

// shapePrefix starts the shape tokens, which are hashed case-preserving (the other
// tokens are hashed lower-cased), since their "A" and "a" differ.
const shapePrefix = "shape:"

// hashCase is the hash of the case-preserving tokens (shapes): hashWord's mixing
// without lower-casing, from another seed.
func hashCase(w []byte) uint64 {
	h := uint64(len(w))*0x9e3779b97f4a7c15 ^ 0x452821e638d01377
	for len(w) >= 8 {
		h = fold(h ^ binary.LittleEndian.Uint64(w))
		w = w[8:]
	}
	var x uint64
	for i, c := range w {
		x |= uint64(c) << uint(8*i)
	}
	return fold(fold(h ^ x))
}

// hashWord is the token hash, with ASCII letters lower-cased (SWAR). A word shorter
// than 8 bytes is one 64-bit value (its bytes and its length in the top byte) put
// through a bijective multiply-xorshift, so short tokens never collide; a longer one
// is mixed in 8 bytes at a time, its last chunk being its final 8 bytes. Its latency
// matters more than its throughput: each token's set insertion branches on it.
// Stable across runs and platforms, since tokens are stored by it (a change needs a
// new tokenizer fingerprint).
func hashWord(w []byte) uint64 {
	n := len(w)
	if n < 8 {
		var x uint64
		switch {
		case n >= 4:
			x = uint64(binary.LittleEndian.Uint32(w)) | uint64(binary.LittleEndian.Uint32(w[n-4:]))<<uint(8*(n-4))
		case n > 0:
			x = uint64(w[0]) | uint64(w[n/2])<<uint(8*(n/2)) | uint64(w[n-1])<<uint(8*(n-1))
		}
		return hashShort(x, n)
	}
	h := uint64(n) * 0x9e3779b97f4a7c15
	for i := 0; i < n-8; i += 8 {
		h = fold(h ^ lower8(binary.LittleEndian.Uint64(w[i:])))
	}
	return fold(h ^ lower8(binary.LittleEndian.Uint64(w[n-8:])))
}

// hashShort is hashWord of a word of n < 8 bytes held in the low bytes of x (the
// bytes above it are ignored).
func hashShort(x uint64, n int) uint64 {
	v := lower8(x&(1<<uint(8*n)-1)) | uint64(n)<<56
	return fold(v ^ 0x243f6a8885a308d3)
}

// fold is a bijective mix: a multiplication by an odd constant, then the high half
// folded into the low one.
func fold(v uint64) uint64 {
	p := v * 0xd6e8feb86659fd93
	return p ^ p>>32
}

// lower8 lower-cases the ASCII capitals among the 8 bytes of x.
func lower8(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := x &^ highs
	geA := low + (0x80-'A')*ones
	gtZ := low + (0x80-'Z'-1)*ones
	upper := (geA &^ gtZ) &^ x & highs
	return x | upper>>2
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// hashBytes hashes b lower-casing ASCII letters on the fly.
func hashBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(lowerTable[c])
		h *= fnvPrime
	}
	return h
}

// byte classes for the word scanner
const (
	clSep     = 1 << iota // white space and control characters end a word
	clSpecial             // ':' and '@' may start URL or address handling
	clLead                // punctuation trimmed at the start of a word
	clTrail               // punctuation trimmed at the end of a word
	clSpace               // isSpace: ' ', \t, \r, \n, \f, \v
	clAlnum               // isAlnum
)

var (
	lowerTable [256]byte
	classTable [256]byte
)

func init() {
	for i := range lowerTable {
		c := byte(i)
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lowerTable[i] = c
		if i <= ' ' || i == 0x7f {
			classTable[i] = clSep
		}
	}
	for c := 0; c < 256; c++ {
		if isLeadPunct(byte(c)) {
			classTable[c] |= clLead
		}
		if isTrailPunct(byte(c)) {
			classTable[c] |= clTrail
		}
	}
	for _, c := range []byte(" \t\r\n\f\v") {
		classTable[c] |= clSpace
	}
	for c := 0; c < 256; c++ {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c >= 0x80 {
			classTable[c] |= clAlnum
		}
	}
	classTable[':'] |= clSpecial
	classTable['@'] |= clSpecial
}

// tokState is the per-message scratch space, pooled.
type tokState struct {
	debug   bool
	set     hashSet
	scratch []byte
	strs    map[string]struct{}
	fields  [][]field // per MIME depth
	dec     []byte
	conv    []byte
	html    []byte
	budget  int
	parts   int
	nheader int // tokens added by the top-level header fields (they come first)
	red     htmlReducer
	// the last prefix seen by prefix (by address: prefixes are string constants or
	// strings kept by the Tokenizer, which outlive the state's use of them)
	lastPrefix     *byte
	lastPrefixLen  int
	lastSimple     bool
	lastPrefixHash uint64
}

func (st *tokState) reset(debug bool) {
	st.debug = debug
	st.set.clear()
	if debug {
		st.strs = map[string]struct{}{}
	}
}

func (st *tokState) add(p1, p2 string, w []byte) {
	if st.debug {
		st.strs[p1+p2+string(lowerInto(nil, w))] = struct{}{}
		return
	}
	if simple, hp := st.prefix(p1); simple {
		// the common case, a prefix ending at its only colon: no copy
		if p2 == "" {
			st.set.add(joinHash(hp, hashWord(w)))
			return
		}
		b := append(append(st.scratch[:0], p2...), w...)
		st.scratch = b
		st.set.add(joinHash(hp, hashWord(b)))
		return
	}
	if p1 == "" && p2 == "" {
		st.set.add(tokenHash(w))
		return
	}
	b := append(append(append(st.scratch[:0], p1...), p2...), w...)
	st.scratch = b
	st.set.add(tokenHash(b))
}

// prefix says whether p ends at its only colon (so that tokenHash splits p+word there)
// and returns its hash. Prefixes are constants and come in runs (the words of one
// field, the pieces of one URL), so the last one is remembered by its address.
func (st *tokState) prefix(p string) (bool, uint64) {
	if p == "" {
		return false, 0
	}
	if d := unsafe.StringData(p); d == st.lastPrefix && len(p) == st.lastPrefixLen {
		return st.lastSimple, st.lastPrefixHash
	}
	simple := strings.IndexByte(p, ':') == len(p)-1
	var h uint64
	if simple {
		h = hashPrefix(p)
	}
	st.lastPrefix, st.lastPrefixLen, st.lastSimple, st.lastPrefixHash = unsafe.StringData(p), len(p), simple, h
	return simple, h
}

// tokenHash is the hash of a token: a token with a colon is split after the first
// one ("subject:" and "free" in "subject:free") and the hashes of the two parts are
// joined, so that a prefixed token is hashed without copying the prefix and the word
// together; a token without one is hashWord of it.
func tokenHash(tok []byte) uint64 {
	k := bytes.IndexByte(tok, ':')
	if k < 0 {
		return hashWord(tok)
	}
	return joinHash(hashWord(tok[:k+1]), hashWord(tok[k+1:]))
}

// joinHash combines the hashes of a token's prefix (up to its first colon) and the
// rest.
func joinHash(prefix, rest uint64) uint64 {
	return fold(rest ^ prefix*0x9e3779b97f4a7c15)
}

// hashPrefix is hashWord of a string (a prefix), without copying it.
func hashPrefix(s string) uint64 {
	return hashWord(unsafe.Slice(unsafe.StringData(s), len(s)))
}

const maxDepth = 8

func (t *Tokenizer) walk(st *tokState, raw []byte) {
	if int64(len(raw)) > int64(t.cfg.MaxMessageSize) {
		raw = raw[:t.cfg.MaxMessageSize]
	}
	st.budget = int(t.cfg.MaxTextSize)
	st.parts = 0
	if len(st.fields) < maxDepth+2 {
		st.fields = make([][]field, maxDepth+2)
	}
	fields, body := splitHeader(st.fields[0][:0], raw, 512)
	st.fields[0] = fields
	t.header(st, fields)
	st.nheader = len(st.set.order)
	t.part(st, fields, body, 0)
}

// header tokenizes the top-level header fields.
func (t *Tokenizer) header(st *tokState, fields []field) {
	var nb [64]byte
	var dec mime.WordDecoder
	dec.CharsetReader = charset.Reader
	for _, f := range fields {
		if len(f.name) > len(nb) {
			continue
		}
		hn := hashWord(f.name) // lower-cases
		if st.debug {
			st.add("h:", "", f.name)
		} else {
			st.set.add(joinHash(hashH, hn)) // tokenHash("h:" + name)
		}
		fi := t.fields[hn]
		if fi != nil && (len(fi.name) != len(f.name) || !strings.EqualFold(fi.name, string(f.name))) {
			fi = nil // another name with the same hash
		}
		if fi == nil {
			continue
		}
		if fi.received {
			t.received(st, f.value)
			continue
		}
		v := f.value
		if fi.name == "message-id" {
			t.shape(st, "shape:mid:", trimSpace(v))
		}
		if bytes.Contains(v, []byte("=?")) {
			if s, err := dec.DecodeHeader(unfold(v)); err == nil {
				v = []byte(s)
			}
		}
		t.words(st, fi.prefix, v)
	}
}

// hashH is hashWord("h:"), the prefix of the header name tokens.
var hashH = hashPrefix("h:")

// fieldInfo is how the tokenizer handles a header field by name.
type fieldInfo struct {
	name     string // lower case
	prefix   string // of its word tokens, "name:"
	received bool   // a Received field (host names and networks only)
}

// received adds "rcvd:" tokens for the host names and /24 networks of a Received field.
// Only words with a dot can yield one, so it looks for dots (bytes.IndexByte) and
// takes the white-space-delimited word around each.
func (t *Tokenizer) received(st *tokState, v []byte) {
	for {
		d := bytes.IndexByte(v, '.')
		if d < 0 {
			return
		}
		s, e := d, d+1
		for s > 0 && !isSpace(v[s-1]) {
			s--
		}
		for e < len(v) && !isSpace(v[e]) {
			e++
		}
		w := v[s:e]
		v = v[e:]
		for len(w) > 0 && isRcvdPunct(w[0]) {
			w = w[1:]
		}
		for len(w) > 0 && isRcvdPunct(w[len(w)-1]) {
			w = w[:len(w)-1]
		}
		if bytes.IndexByte(w, '.') <= 0 {
			continue
		}
		if isIPv4(w) {
			k := bytes.LastIndexByte(w, '.')
			st.add("rcvd:", "", w[:k])
			continue
		}
		if bytes.IndexByte(w, '@') >= 0 || bytes.IndexByte(w, ':') >= 0 {
			continue
		}
		st.add("rcvd:", "", w)
		// and its last two labels
		if k := bytes.LastIndexByte(w, '.'); k > 0 {
			if k2 := bytes.LastIndexByte(w[:k], '.'); k2 > 0 {
				st.add("rcvd:", "", w[k2+1:])
			}
		}
	}
}

// shape adds a token for the pattern of v: each run of digits becomes '9', of
// letters 'a' (lower case) or 'A' (upper or mixed), and punctuation stays, so that
// "<20020823.1234.ABCD@host>" reads "<9.9.A@a>".
func (t *Tokenizer) shape(st *tokState, prefix string, v []byte) {
	if len(v) > 128 {
		v = v[:128]
	}
	var buf [128]byte
	out := buf[:0]
	var last byte
	for _, c := range v {
		var k byte
		switch {
		case c >= '0' && c <= '9':
			k = '9'
		case c >= 'a' && c <= 'z':
			k = 'a'
		case c >= 'A' && c <= 'Z':
			k = 'A'
		default:
			k = c
		}
		if (k == 'a' || k == 'A') && (last == 'a' || last == 'A') {
			if k != last {
				out[len(out)-1] = 'A'
				last = 'A'
			}
			continue
		}
		if k == last && k == '9' {
			continue
		}
		out = append(out, k)
		last = k
	}
	if st.debug {
		st.strs[prefix+string(out)] = struct{}{}
		return
	}
	b := append(append(st.scratch[:0], prefix...), out...)
	st.scratch = b
	st.set.add(hashCase(b)) // case-preserving: "A" and "a" are different shapes
}

func isRcvdPunct(c byte) bool {
	return c == '(' || c == ')' || c == '[' || c == ']' || c == ';' || c == ',' || c == '<' || c == '>'
}

func isIPv4(w []byte) bool {
	dots := 0
	for _, c := range w {
		if c == '.' {
			dots++
		} else if c < '0' || c > '9' {
			return false
		}
	}
	return dots == 3
}

// part tokenizes one MIME entity with the given header fields.
func (t *Tokenizer) part(st *tokState, fields []field, body []byte, depth int) {
	st.parts++
	var tb, db [64]byte
	typ, params := mediaType(headerValue(fields, "content-type"), &tb)
	if len(typ) == 0 {
		typ = append(tb[:0], "text/plain"...)
	}
	st.add("ct:", "", typ)
	if len(params.charset) > 0 {
		st.add("charset:", "", params.charset)
	}
	cte := trimSpace(headerValue(fields, "content-transfer-encoding"))
	if len(cte) > 0 && len(cte) < 32 {
		st.add("cte:", "", cte)
	}
	fn := params.name
	if cd := headerValue(fields, "content-disposition"); cd != nil {
		// RFC 2183 §2.3: the disposition's filename first, then the type's name
		if _, dp := mediaType(cd, &db); len(dp.filename) > 0 {
			fn = dp.filename
		}
	}
	if len(fn) > 0 {
		ext := fn
		if k := bytes.LastIndexByte(fn, '.'); k >= 0 {
			ext = fn[k+1:]
		}
		if len(ext) > 8 {
			ext = ext[:8]
		}
		st.add("fname:", "", ext)
		t.words(st, "fname:", fn)
	}
	switch {
	case bytes.HasPrefix(typ, []byte("multipart/")):
		if depth >= maxDepth {
			return
		}
		if len(params.boundary) > 0 {
			t.shape(st, "shape:bnd:", params.boundary)
		}
		var arr [16][]byte
		parts := splitMultipart(arr[:0], body, params.boundary, t.cfg.MaxParts)
		if len(parts) == 0 {
			// no delimiter of the boundary (a missing or mistyped one, as spamware
			// writes "--= Multipart" for "=Multipart"): the body is read as plain
			// text, as mail readers show it, rather than not at all
			st.add("mime:", "", []byte("nodelim"))
			t.part(st, nil, body, depth+1)
			return
		}
		for _, p := range parts {
			if st.parts >= t.cfg.MaxParts {
				return
			}
			f, b := splitHeader(st.fields[depth+1][:0], p, 64)
			st.fields[depth+1] = f
			t.part(st, f, b, depth+1)
		}
	case string(typ) == "message/rfc822":
		if depth >= maxDepth {
			return
		}
		f, b := splitHeader(st.fields[depth+1][:0], body, 128)
		st.fields[depth+1] = f
		if s := headerValue(f, "subject"); s != nil {
			t.words(st, "", s)
		}
		t.part(st, f, b, depth+1)
	case bytes.HasPrefix(typ, []byte("text/")):
		if st.budget <= 0 {
			return
		}
		text := body
		switch {
		case bytes.EqualFold(cte, []byte("quoted-printable")):
			st.dec = decodeQP(st.dec[:0], body)
			text = st.dec
		case bytes.EqualFold(cte, []byte("base64")):
			st.dec = decodeBase64(st.dec[:0], body)
			text = st.dec
		}
		if len(text) > st.budget {
			text = text[:st.budget]
		}
		st.budget -= len(text)
		text, st.conv = toUTF8(text, params.charset, st.conv)
		if string(typ) == "text/html" || looksHTML(text) {
			st.red.onURL = func(u []byte) { t.url(st, u) }
			st.html = st.red.reduce(st.html[:0], text)
			text = st.html
		}
		t.words(st, "", text)
	}
}

// looksHTML spots HTML sent as text/plain, common in spam.
func looksHTML(b []byte) bool {
	if len(b) > 512 {
		b = b[:512]
	}
	if bytes.IndexByte(b, '<') < 0 {
		return false
	}
	return indexFold(b, "<html") >= 0 || indexFold(b, "<body") >= 0
}

// words splits text at white space and adds a token for each word. Plain words are
// trimmed, measured and hashed in the same pass over their bytes; words that may be
// URLs or addresses, and all words in debug mode, go through word.
func (t *Tokenizer) words(st *tokState, prefix string, text []byte) {
	slow := st.debug
	// a prefix ending at its only colon is hashed once (tokenHash)
	simplePrefix, hp := st.prefix(prefix)
	i, n := 0, len(text)
	for i < n {
		for i < n && classTable[text[i]]&clSep != 0 {
			i++
		}
		start := i
		for i < n && classTable[text[i]]&clLead != 0 {
			i++
		}
		ws := i
		var flags byte
		// short: the word (before trimming its end) is shorter than 8 bytes and x
		// holds it in its low bytes, so that it is hashed without reading it again
		var x uint64
		short := false
		switch {
		case i+8 <= n:
			// most words end within the next 8 bytes: the first step of scanWord
			x = binary.LittleEndian.Uint64(text[i:])
			if sep, spec := chunkSep(x); sep != 0 {
				if spec&(sep&-sep-1) != 0 {
					flags = clSpecial
				}
				i += bits.TrailingZeros64(sep) / 8
				short = true
				break
			}
			fallthrough
		default:
			var special bool
			i, special = scanWord(text, i)
			if special {
				flags = clSpecial
			}
		}
		goodEnd := i
		for goodEnd > ws && classTable[text[goodEnd-1]]&clTrail != 0 {
			goodEnd--
		}
		if i == start {
			continue
		}
		w := text[ws:goodEnd]
		if flags&clSpecial != 0 || slow || (len(w) > 4 && w[0]|0x20 == 'w' && hasPrefixFold(w, "www.")) {
			t.word(st, prefix, text[start:i], flags&clSpecial != 0)
			continue
		}
		switch l := len(w); {
		case l == 0:
		case l > maxWord:
			bucket := min(l/10, 9)
			var sk = [2]byte{w[0], '0' + byte(bucket)}
			st.add(prefix, "skip:", sk[:])
		case l < minWord:
		default:
			var hGood uint64
			switch {
			case prefix == "" && short:
				hGood = hashShort(x, l)
			case prefix == "":
				hGood = hashWord(w)
			case simplePrefix && short:
				hGood = joinHash(hp, hashShort(x, l))
			case simplePrefix:
				hGood = joinHash(hp, hashWord(w))
			default:
				st.scratch = append(append(st.scratch[:0], prefix...), w...)
				hGood = tokenHash(st.scratch)
			}
			st.set.add(hGood)
		}
	}
}

// scanWord returns the end of the word starting at i (the first white space or control
// byte) and whether it contains ':' or '@', eight bytes at a time (SWAR).
func scanWord(text []byte, i int) (int, bool) {
	var spec uint64
	for i+8 <= len(text) {
		sep, sp := chunkSep(binary.LittleEndian.Uint64(text[i:]))
		if sep != 0 {
			low := sep & -sep
			spec |= sp & (low - 1)
			return i + bits.TrailingZeros64(sep)/8, spec != 0
		}
		spec |= sp
		i += 8
	}
	for ; i < len(text); i++ {
		f := classTable[text[i]]
		if f&clSep != 0 {
			break
		}
		if f&clSpecial != 0 {
			spec = 1
		}
	}
	return i, spec != 0
}

// chunkSep flags (in the high bit of each byte) the bytes of x that end a word (below
// 0x21, or 0x7f) and the bytes ':' and '@'. Only the lowest flagged byte of each is
// exact (a borrow may flag a byte above a flagged one), which is all the scanners use.
func chunkSep(x uint64) (sep, spec uint64) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	sep = (x - 0x21*ones) &^ x & highs
	d := x ^ 0x7f*ones
	sep |= (d - ones) &^ d & highs
	c := x ^ ':'*ones
	a := x ^ '@'*ones
	spec = ((c-ones)&^c | (a-ones)&^a) & highs
	return sep, spec
}

func isLeadPunct(c byte) bool {
	switch c {
	case '"', '\'', '(', '[', '{', '<', '*', '`', ',', ';', ':', '.', '>', '|':
		return true
	}
	return false
}

func isTrailPunct(c byte) bool {
	switch c {
	case '"', '\'', ')', ']', '}', '>', '*', '`', ',', ';', ':', '.', '<', '|':
		return true
	}
	return false
}

func (t *Tokenizer) word(st *tokState, prefix string, w []byte, special bool) {
	for len(w) > 0 && isLeadPunct(w[0]) {
		w = w[1:]
	}
	for len(w) > 0 && isTrailPunct(w[len(w)-1]) {
		w = w[:len(w)-1]
	}
	if len(w) == 0 {
		return
	}
	if (special && hasScheme(w)) || (len(w) > 4 && (w[0] == 'w' || w[0] == 'W') && hasPrefixFold(w, "www.")) {
		t.url(st, w)
		return
	}
	if !special {
		// fast path: a plain word
	} else if at := bytes.IndexByte(w, '@'); at > 0 && at < len(w)-1 && bytes.IndexByte(w[at:], '.') > 0 {
		dom := w[at+1:]
		if len(dom) > 64 {
			dom = dom[:64]
		}
		if len(w) > 64 {
			w = w[:64]
		}
		if prefix == "" {
			prefix = "email:"
		}
		st.add(prefix, "@", dom)
		st.add(prefix, "", w)
		return
	}
	n := len(w)
	if n > maxWord {
		bucket := n / 10
		if bucket > 9 {
			bucket = 9
		}
		var sk = [2]byte{w[0], '0' + byte(bucket)}
		st.add(prefix, "skip:", sk[:])
		return
	}
	if n < minWord {
		return
	}
	st.add(prefix, "", w)
}

// isAlnum: ASCII letters and digits, and every byte of a multi-byte UTF-8 sequence.
func isAlnum(c byte) bool { return classTable[c]&clAlnum != 0 }

func hasScheme(w []byte) bool {
	k := bytes.Index(w, []byte("://"))
	if k <= 0 || k > 8 {
		return false
	}
	for _, c := range w[:k] {
		if !(('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && strings.EqualFold(string(b[:len(p)]), p)
}

// url adds tokens for the scheme, the host and its registrable suffix, and path pieces.
func (t *Tokenizer) url(st *tokState, u []byte) {
	if len(u) > 512 {
		u = u[:512]
	}
	if k := bytes.Index(u, []byte("://")); k > 0 && k <= 8 {
		st.add("proto:", "", u[:k])
		u = u[k+3:]
	} else if hasPrefixFold(u, "mailto:") {
		t.word(st, "mailto:", u[7:], true)
		return
	}
	e := bytes.IndexAny(u, "/?#")
	if e < 0 {
		e = len(u)
	}
	host, rest := u[:e], u[e:]
	if k := bytes.LastIndexByte(host, '@'); k >= 0 {
		st.add("url:", "userinfo", nil)
		host = host[k+1:]
	}
	if k := bytes.IndexByte(host, ':'); k >= 0 {
		st.add("url:", "port", nil)
		host = host[:k]
	}
	if isIPv4(host) {
		st.add("url:", "ip", nil)
	} else if len(host) > 0 {
		st.add("url:", "", host)
		// the last two labels (three when the second-to-last is short, as in co.uk)
		dots := 0
		for i := len(host) - 1; i >= 0; i-- {
			if host[i] == '.' {
				dots++
				if dots == 2 {
					if tail := host[i+1:]; len(tail) < len(host) {
						st.add("url:", "", tail)
					}
					break
				}
			}
		}
	}
	n := 0
	for len(rest) > 0 && n < 16 {
		i := 0
		for i < len(rest) && !isAlnum(rest[i]) {
			i++
		}
		j := i
		for j < len(rest) && isAlnum(rest[j]) {
			j++
		}
		if p := rest[i:j]; len(p) >= 2 && len(p) <= maxWord {
			st.add("url:", "", p)
			n++
		}
		rest = rest[j:]
	}
}

// hashSet is an open-addressing set of uint64, cleared in O(1) by a generation stamp
// kept in the same slot as the key (one memory access per probe); it also keeps its
// keys in insertion order so that listing them costs O(n).
type hashSet struct {
	all   bool // keep every key, repeats included (hashesAll)
	slots []setSlot
	gen   uint32
	order []uint64
}

type setSlot struct {
	key uint64
	gen uint32
}

func (s *hashSet) clear() {
	s.gen++
	s.order = s.order[:0]
	// a table grown for a huge message would make every later insert a cache miss
	if s.gen == 0 || len(s.slots) < 1024 || len(s.slots) > 4096 {
		s.slots = make([]setSlot, 1024)
		s.gen = 1
	}
}

func (s *hashSet) add(h uint64) {
	if s.all {
		s.order = append(s.order, h)
		return
	}
	if 2*(len(s.order)+1) > len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	i := h & mask // token hashes are mixed already
	for {
		sl := &s.slots[i]
		if sl.gen != s.gen {
			*sl = setSlot{key: h, gen: s.gen}
			s.order = append(s.order, h)
			return
		}
		if sl.key == h {
			return
		}
		i = (i + 1) & mask
	}
}

// insert adds h and reports whether it was not there yet.
func (s *hashSet) insert(h uint64) bool {
	n := len(s.order)
	s.add(h)
	return len(s.order) > n
}

func (s *hashSet) grow() {
	old := s.order
	s.slots = make([]setSlot, 2*len(s.slots))
	s.gen = 1
	s.order = make([]uint64, 0, 2*len(old))
	for _, h := range old {
		s.add(h)
	}
}

func (s *hashSet) appendTo(dst []uint64) []uint64 {
	return append(dst, s.order...)
}
