package sieve

import (
	"fmt"
	"strings"
)

// String lists the result as Pigeonhole's sieve-test prints it ("Performed actions"
// then "Implicit keep"), for command-line tools and logs.
func (r *Result) String() string {
	var b strings.Builder
	b.WriteString("\nPerformed actions:\n\n")
	var implicit *Keep
	n := 0
	for _, a := range r.Actions {
		if k, ok := a.(Keep); ok && k.Implicit {
			implicit = &k
			continue
		}
		n++
		writeAction(&b, a)
	}
	if n == 0 {
		b.WriteString("  (none)\n")
	}
	b.WriteString("\nImplicit keep:\n\n")
	if implicit != nil {
		writeAction(&b, Keep{Flags: implicit.Flags})
	} else {
		b.WriteString("  (none)\n")
	}
	return b.String()
}

func writeAction(b *strings.Builder, a Action) {
	flags := func(f []string) {
		if len(f) > 0 {
			fmt.Fprintf(b, "        + add IMAP flags: %s\n", strings.Join(f, " "))
		}
	}
	switch x := a.(type) {
	case Keep:
		b.WriteString(" * store message in folder: INBOX\n")
		flags(x.Flags)
	case FileInto:
		fmt.Fprintf(b, " * store message in folder: %s\n", x.Mailbox)
		flags(x.Flags)
		if x.Create {
			b.WriteString("        + create mailbox if it does not exist\n")
		}
		if x.SpecialUse != "" {
			fmt.Fprintf(b, "        + special-use: %s\n", x.SpecialUse)
		}
		if x.Copy {
			b.WriteString("        + preserve implicit keep\n")
		}
	case Redirect:
		fmt.Fprintf(b, " * redirect message to: <%s>\n", x.Address)
		if x.Copy {
			b.WriteString("        + preserve implicit keep\n")
		}
	case Reject:
		fmt.Fprintf(b, " * reject message with reason: %s\n", x.Reason)
	case Discard:
		b.WriteString(" * discard\n")
	case Vacation:
		b.WriteString(" * send vacation message:\n")
		fmt.Fprintf(b, "    => seconds : %d\n", int64(x.Period.Seconds()))
		fmt.Fprintf(b, "    => subject : %s\n", x.Subject)
		if x.From != "" {
			fmt.Fprintf(b, "    => from    : %s\n", x.From)
		}
		fmt.Fprintf(b, "    => handle  : %s\n", x.Handle)
		if x.Skip != "" {
			fmt.Fprintf(b, "    => not sent: %s\n", x.Skip)
		}
		fmt.Fprintf(b, "\nSTART MESSAGE\n%s\nEND MESSAGE\n", strings.TrimRight(strings.ReplaceAll(x.Reason, "\r\n", "\n"), "\n"))
	}
}
