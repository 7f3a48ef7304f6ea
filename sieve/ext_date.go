package sieve

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// date and currentdate (RFC 5260 §4, §5).

func init() {
	extensions["date"] = true
	extensions["index"] = true
	tests["date"] = &testSpec{ext: "date", compile: compileDate}
	tests["currentdate"] = &testSpec{ext: "date", compile: compileCurrentdate}
}

var dateParts = map[string]bool{"year": true, "month": true, "day": true, "date": true, "julian": true,
	"hour": true, "minute": true, "second": true, "time": true, "iso8601": true, "std11": true,
	"zone": true, "weekday": true}

// datePart formats one date-part of t (RFC 5260 §4.2).
func datePart(t time.Time, part string) string {
	switch part {
	case "year":
		return fmt.Sprintf("%04d", t.Year())
	case "month":
		return fmt.Sprintf("%02d", int(t.Month()))
	case "day":
		return fmt.Sprintf("%02d", t.Day())
	case "date":
		return t.Format("2006-01-02")
	case "julian":
		// Modified Julian Day: days since 1858-11-17.
		y, m, d := t.Date()
		day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return itoa(int(day.Sub(time.Date(1858, 11, 17, 0, 0, 0, 0, time.UTC)).Hours() / 24))
	case "hour":
		return fmt.Sprintf("%02d", t.Hour())
	case "minute":
		return fmt.Sprintf("%02d", t.Minute())
	case "second":
		return fmt.Sprintf("%02d", t.Second())
	case "time":
		return t.Format("15:04:05")
	case "iso8601":
		return t.Format("2006-01-02T15:04:05-07:00")
	case "std11":
		return t.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	case "zone":
		return t.Format("-0700")
	case "weekday":
		return itoa(int(t.Weekday()))
	}
	return ""
}

// parseZone reads a "+hhmm" zone (RFC 5260 §4.1.1).
func parseZone(z string) (*time.Location, bool) {
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return nil, false
	}
	for i := 1; i < 5; i++ {
		if !isDigit(z[i]) {
			return nil, false
		}
	}
	h := int(z[1]-'0')*10 + int(z[2]-'0')
	m := int(z[3]-'0')*10 + int(z[4]-'0')
	if h > 23 || m > 59 {
		return nil, false
	}
	off := h*3600 + m*60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone(z, off), true
}

type dateTest struct {
	header       *strExpr // nil for currentdate
	zone         *strExpr
	originalZone bool
	part         *strExpr
	m            *matcher
	idx          fieldIndex
}

func (x *dateTest) eval(r *runner) (bool, error) {
	part := strings.ToLower(x.part.eval(r))
	if !dateParts[part] {
		return false, nil
	}
	var times []time.Time
	if x.header == nil {
		times = []time.Time{r.host.Now()}
	} else {
		name := x.header.eval(r)
		for _, v := range x.idx.pick(r.header(name)) {
			if equalFoldASCII(name, "received") {
				if i := strings.LastIndexByte(v, ';'); i >= 0 {
					v = v[i+1:]
				}
			}
			t, err := mail.ParseDate(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			times = append(times, t)
		}
	}
	var vals []string
	for _, t := range times {
		switch {
		case x.zone != nil:
			loc, ok := parseZone(x.zone.eval(r))
			if !ok {
				return false, nil
			}
			t = t.In(loc)
		case !x.originalZone:
			t = t.In(time.Local)
		}
		vals = append(vals, datePart(t, part))
	}
	return x.m.matchValues(r, vals)
}

func compileDate(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch(indexTags, []tagSpec{{name: "zone", param: aString, group: "zone"}, {name: "originalzone", group: "zone"}}))
	if !ok || !all(c.positional(n, pa, aString, aString, aStringList), c.noSubtests(n)) {
		return nil
	}
	x := c.dateCommon(n, pa, pa.pos[1], pa.pos[2])
	if x == nil {
		return nil
	}
	x.header = c.str(pa.pos[0].strs[0])
	if x.header.constant() && !validFieldName(x.header.lit) {
		c.errf(pa.pos[0].pos, "date: invalid header name '%s'", x.header.lit)
		return nil
	}
	x.originalZone = pa.has("originalzone")
	x.idx = c.fieldIndex(n, pa)
	return x
}

func compileCurrentdate(c *compiler, n *node) test {
	pa, ok := c.args(n, withMatch([]tagSpec{{name: "zone", param: aString}}))
	if !ok || !all(c.positional(n, pa, aString, aStringList), c.noSubtests(n)) {
		return nil
	}
	return c.dateCommon(n, pa, pa.pos[0], pa.pos[1])
}

func (c *compiler) dateCommon(n *node, pa *parsedArgs, part, keys *argument) *dateTest {
	x := &dateTest{part: c.str(part.strs[0])}
	if x.part.constant() && !dateParts[strings.ToLower(x.part.lit)] {
		c.errf(part.pos, "%s: unknown date part '%s'", n.name, x.part.lit)
		return nil
	}
	if a, ok := pa.tags["zone"]; ok {
		x.zone = c.str(a.strs[0])
		if x.zone.constant() {
			if _, ok := parseZone(x.zone.lit); !ok {
				c.warnf(a.pos, "%s: invalid time zone '%s'", n.name, x.zone.lit)
			}
		}
	}
	if x.m = c.matcher(n, pa, keys); x.m == nil {
		return nil
	}
	return x
}
