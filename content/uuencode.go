package content

import (
	"bytes"
	"strings"
)

// maxUUFiles bounds the uuencoded files taken from one text part.
const maxUUFiles = 20

// uuFile is one "begin MODE NAME" ... "end" block.
type uuFile struct {
	name string
	data []byte
	bad  bool
}

// findUU extracts the uuencoded files of a text body, the form worms used before MIME
// was everywhere (and which Postfix users still block with body_checks).
func findUU(b []byte, budget int64) []uuFile {
	if !bytes.Contains(b, []byte("begin ")) {
		return nil
	}
	var out []uuFile
	var cur *uuFile
	for len(b) > 0 && len(out) < maxUUFiles {
		nl := bytes.IndexByte(b, '\n')
		var line []byte
		if nl < 0 {
			line, b = b, nil
		} else {
			line, b = b[:nl], b[nl+1:]
		}
		line = bytes.TrimRight(line, "\r")
		if cur == nil {
			if name, ok := uuBegin(line); ok {
				cur = &uuFile{name: name}
			}
			continue
		}
		if bytes.Equal(bytes.TrimSpace(line), []byte("end")) {
			out = append(out, *cur)
			cur = nil
			continue
		}
		if int64(len(cur.data)) < budget {
			if !uuLine(line, &cur.data) {
				cur.bad = true
			}
		}
	}
	if cur != nil {
		cur.bad = true
		out = append(out, *cur)
	}
	return out
}

// uuBegin parses "begin 644 name".
func uuBegin(line []byte) (string, bool) {
	s := string(line)
	if !strings.HasPrefix(s, "begin ") {
		return "", false
	}
	f := strings.SplitN(strings.TrimSpace(s[6:]), " ", 2)
	if len(f) != 2 || len(f[0]) < 3 || len(f[0]) > 4 || strings.Trim(f[0], "01234567") != "" {
		return "", false
	}
	name := strings.TrimSpace(f[1])
	return name, name != ""
}

// uuLine decodes one uuencoded line: a length character, then groups of four characters
// for three bytes each.
func uuLine(line []byte, out *[]byte) bool {
	if len(line) == 0 {
		return true
	}
	n := int((line[0] - ' ') & 0x3F)
	if n == 0 {
		return true
	}
	body := line[1:]
	ok := true
	for i := 0; n > 0; i += 4 {
		var q [4]byte
		for k := 0; k < 4; k++ {
			if i+k < len(body) {
				c := body[i+k]
				if c < ' ' || c > '`' {
					ok = false
				}
				q[k] = (c - ' ') & 0x3F
			} else {
				ok = false
			}
		}
		t := []byte{q[0]<<2 | q[1]>>4, q[1]<<4 | q[2]>>2, q[2]<<6 | q[3]}
		if n < 3 {
			t = t[:n]
		}
		*out = append(*out, t...)
		n -= len(t)
		if i > len(body) {
			return false
		}
	}
	return ok
}

// addUU records the uuencoded files of a text part as attachments.
func (w *walker) addUU(p *Part, data []byte) {
	budget := int64(w.lim.MaxDecodedSize) - w.decoded
	for _, f := range findUU(data, budget) {
		w.decoded += int64(len(f.data))
		a := &Attachment{Path: p.Path, Size: int64(len(f.data)), Data: f.data, Disposition: "uuencode"}
		a.reason("uuencoded")
		if f.bad {
			a.reason("bad_uuencode")
		}
		a.setNames([]string{f.name})
		w.addAttachment(a, f.data)
	}
}
