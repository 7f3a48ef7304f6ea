package access

import (
	"fmt"
	"strconv"
	"strings"
)

// Postfix's defaults for the replies of access tables (postconf(5)).
const (
	RejectCode = 554 // access_map_reject_code
	DeferCode  = 450 // access_map_defer_code (also for DEFER_IF_PERMIT, DEFER_IF_REJECT)
)

// Action is a parsed table result (access(5) "ACCEPT ACTIONS" ... "OTHER ACTIONS").
type Action struct {
	// Name is the action word in upper case: OK, REJECT, DEFER, DEFER_IF_PERMIT,
	// DEFER_IF_REJECT, DUNNO, FILTER, HOLD, DISCARD, REDIRECT, BCC, WARN, INFO, PREPEND,
	// or the three digits of a "4xx text" / "5xx text" result. "RELAY", "permit" and an
	// all-numerical result are OK.
	Name string
	// Text is what follows the action word.
	Text string
	// Code is the SMTP reply code of REJECT, DEFER, DEFER_IF_* and NNN results, else 0.
	Code int
}

// Reject reports whether the action refuses with a permanent (5xx) reply.
func (a Action) Reject() bool { return a.Code >= 500 }

// Defer reports whether the action refuses with a temporary (4xx) reply, DEFER_IF_PERMIT
// and DEFER_IF_REJECT included.
func (a Action) Defer() bool { return a.Code >= 400 && a.Code < 500 }

// ParseAction parses a table result as smtpd_check.c's check_table_result does: the first
// word is the action (case-insensitive), the rest its text. Results Postfix would evaluate
// as a restriction list ("permit_mynetworks, reject") are refused: portcullis rules take
// that role.
func ParseAction(value string) (Action, error) {
	value = strings.TrimSpace(value)
	word, text, _ := strings.Cut(strings.ReplaceAll(value, "\t", " "), " ")
	text = strings.TrimSpace(text)
	up := strings.ToUpper(word)
	a := Action{Name: up, Text: text}
	switch up {
	case "OK", "RELAY", "PERMIT":
		a.Name = "OK"
	case "DUNNO", "HOLD", "DISCARD", "WARN", "INFO":
	case "REJECT":
		a.Code = RejectCode
	case "DEFER", "DEFER_IF_PERMIT", "DEFER_IF_REJECT":
		a.Code = DeferCode
	case "FILTER":
		if !strings.Contains(text, ":") {
			return a, fmt.Errorf("FILTER needs transport:destination")
		}
	case "REDIRECT", "BCC":
		if text == "" {
			return a, fmt.Errorf("%s needs an address", up)
		}
	case "PREPEND":
		if !isHeader(text) {
			return a, fmt.Errorf("PREPEND needs a header field (Name: value), got %q", text)
		}
	case "":
		return a, fmt.Errorf("empty result")
	default:
		if allDigits(word) && (len(word) != 3 || text == "") {
			// An all-numerical result means OK (pop-before-smtp time stamps, access(5)).
			a.Name, a.Text = "OK", ""
			break
		}
		if len(word) == 3 && allDigits(word) {
			code, _ := strconv.Atoi(word)
			if code < 400 || code > 599 {
				return a, fmt.Errorf("reply code %d is not 4xx or 5xx", code)
			}
			a.Code = code
			break
		}
		return a, fmt.Errorf("unknown action %q (restriction lists in access tables are not supported: write a rule)", word)
	}
	return a, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHeader(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// validateResult is the load-time check of a literal table result.
func validateResult(v string) error {
	_, err := ParseAction(v)
	return err
}

// Reply returns the SMTP reply Postfix sends for a refusing action, or "" for others:
// "554 5.7.1 <name>: Client host rejected: Access denied". name is the reply name
// (hostname[address], the HELO name, the address) and class the reply class ("Client
// host", "Helo command", "Sender address", "Recipient address").
func (a Action) Reply(name, class string) string {
	if a.Code == 0 {
		return ""
	}
	def := "Access denied"
	if a.Name == "DEFER_IF_PERMIT" || a.Name == "DEFER_IF_REJECT" {
		def = "Service unavailable"
	}
	dsn, text := splitDSN(a.Text, a.Code)
	if text == "" {
		text = def
	}
	return fmt.Sprintf("%d %s <%s>: %s rejected: %s", a.Code, dsn, name, class, text)
}

// splitDSN takes an enhanced status code from the start of text (RFC 3463), its class
// digit made to agree with the reply code as Postfix's smtpd_check_reject does, or the
// default X.7.1.
func splitDSN(text string, code int) (string, string) {
	class := strconv.Itoa(code / 100)
	word, rest, _ := strings.Cut(text, " ")
	if isDSN(word) {
		return class + word[1:], strings.TrimSpace(rest)
	}
	return class + ".7.1", text
}

func isDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 || !allDigits(p) {
			return false
		}
	}
	return true
}
