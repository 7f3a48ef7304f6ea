package rbl

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"

	"github.com/emersion/go-message"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// URL scanning limits (defaults of RHSBLConfig).
const (
	defaultMaxScanBytes  = 1 << 20
	defaultMaxURLDomains = 20
	maxParts             = 100
)

var errStop = errors.New("stop")

// URLDomains returns the registrable domains (public suffix plus one label) of the http,
// https and www. URLs found in the text parts of a message, in order of appearance,
// without duplicates. It reads at most maxBytes of decoded text and returns at most
// maxDomains domains. A message that is not MIME is scanned as it is.
//
// This is a small, bounded scanner for programs that use this package alone; the RHSBL
// policy takes the URLs of the content package's walk, which every policy shares.
func URLDomains(raw []byte, maxBytes, maxDomains int) []string {
	if maxBytes <= 0 {
		maxBytes = defaultMaxScanBytes
	}
	if maxDomains <= 0 {
		maxDomains = defaultMaxURLDomains
	}
	var out []string
	add := func(host string) bool {
		d := registrable(host)
		if d != "" && !contains(out, d) {
			out = append(out, d)
		}
		return len(out) < maxDomains
	}
	budget := maxBytes
	ent, _ := message.Read(bytes.NewReader(raw))
	if ent == nil { // not a message: scan the text as it is
		scanHosts(raw[:min(len(raw), maxBytes)], add)
		return out
	}
	parts := 0
	_ = ent.Walk(func(_ []int, part *message.Entity, _ error) error {
		parts++
		if parts > maxParts || budget <= 0 || len(out) >= maxDomains {
			return errStop
		}
		if part.MultipartReader() != nil {
			return nil
		}
		ct, _, _ := part.Header.ContentType()
		if ct != "" && !strings.HasPrefix(ct, "text/") {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(part.Body, int64(budget)))
		budget -= len(b)
		if !scanHosts(b, add) {
			return errStop
		}
		return nil
	})
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scanHosts finds the host names of URLs in text: after "http://", "https://" (any case,
// with backslashes as browsers accept them) and a "www." that starts a word. It calls add
// for each and stops when add returns false (and then returns false).
func scanHosts(text []byte, add func(host string) bool) bool {
	for i := 0; i < len(text); i++ {
		c := text[i] | 0x20
		if c != 'h' && c != 'w' {
			continue
		}
		start := -1
		switch {
		case hasPrefixFold(text[i:], "http://"):
			start = i + 7
		case hasPrefixFold(text[i:], "https://"):
			start = i + 8
		case hasPrefixFold(text[i:], "http:\\\\"):
			start = i + 7
		case hasPrefixFold(text[i:], "https:\\\\"):
			start = i + 8
		case hasPrefixFold(text[i:], "www.") && (i == 0 || !isHostByte(text[i-1])):
			start = i
		}
		if start < 0 {
			continue
		}
		for start < len(text) && (text[start] == '/' || text[start] == '\\') {
			start++
		}
		end := start
		for end < len(text) && end-start < 512 && !isURLDelim(text[end]) {
			end++
		}
		i = end - 1
		auth := string(text[start:end])
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			auth = auth[at+1:]
		}
		if strings.HasPrefix(auth, "[") { // an IPv6 literal
			continue
		}
		if colon := strings.IndexByte(auth, ':'); colon >= 0 {
			auth = auth[:colon]
		}
		if auth != "" && !add(auth) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

func isHostByte(c byte) bool {
	return c == '.' || c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z' || c >= 0x80
}

// isURLDelim reports whether c ends the authority part of a URL.
func isURLDelim(c byte) bool {
	switch c {
	case '/', '\\', '?', '#', ' ', '\t', '\r', '\n', '"', '\'', '<', '>', '(', ')', '[', ']', '{', '}', ',', ';', '|', '^', '`', '=', '&':
		return true
	}
	return c < 0x20 || c == 0x7f
}

// registrable returns the registrable domain of host (RFC 5782's RHSBLs list domains at
// that level), or "" when host is not a domain name: an IP address, a single label, a
// public suffix itself, invalid characters.
func registrable(host string) string {
	host = strings.TrimRight(strings.ToLower(host), ".")
	if host == "" || len(host) > 253 {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	host = asciiDomain(host)
	if !validDomain(host) {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return ""
	}
	return d
}

// asciiDomain returns the A-label form of an internationalized domain name (RFC 5891),
// or "" when it has none; ASCII names are returned as they are.
func asciiDomain(d string) string {
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return ""
			}
			return a
		}
	}
	return d
}

// validDomain reports whether s is a lower-case LDH domain name with at least two labels
// (underscores allowed, as they appear in the wild).
func validDomain(s string) bool {
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
				return false
			}
		}
	}
	// A numeric top-level label means an IP address written oddly (1.2.3.4.).
	tld := s[strings.LastIndexByte(s, '.')+1:]
	return strings.Trim(tld, "0123456789") != ""
}
