package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"
)

// PasswordInput says where `portcullis user add|passwd` reads the new password from.
type PasswordInput struct {
	// Stdin reads the password from the first line of In (--password-stdin, for
	// scripts); the line ending is removed, nothing else. Otherwise the password is
	// read twice from the terminal In with echo off.
	Stdin bool
	// In is the input (default os.Stdin). Without Stdin it must be a terminal.
	In io.Reader
	// Prompt receives the prompts (default os.Stderr).
	Prompt io.Writer
}

// Read returns the new password, refusing an empty one.
func (p PasswordInput) Read() (string, error) {
	in, prompt := p.In, p.Prompt
	if in == nil {
		in = os.Stdin
	}
	if prompt == nil {
		prompt = os.Stderr
	}
	var pw string
	if p.Stdin {
		line, err := bufio.NewReaderSize(io.LimitReader(in, MaxPasswordLen+2), MaxPasswordLen+2).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		if !strings.HasSuffix(line, "\n") && len(line) > MaxPasswordLen {
			return "", fmt.Errorf("password on stdin longer than %d bytes", MaxPasswordLen)
		}
		pw = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	} else {
		f, ok := in.(interface{ Fd() uintptr })
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", errors.New("standard input is not a terminal: give the password with --password-stdin")
		}
		fd := int(f.Fd())
		fmt.Fprint(prompt, "New password: ")
		a, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Retype new password: ")
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords do not match")
		}
		pw = string(a)
	}
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}

// AddUserCmd is `portcullis user add ADDRESS [--password-stdin]`.
func AddUserCmd(ctx context.Context, db *DB, address string, pw PasswordInput, out io.Writer) error {
	addr, err := db.canonical(address)
	if err != nil {
		return err
	}
	if ok, err := db.Exists(ctx, addr); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%w: %s", ErrUserExists, addr)
	}
	p, err := pw.Read()
	if err != nil {
		return err
	}
	if err := db.Add(ctx, addr, p); err != nil {
		return err
	}
	fmt.Fprintf(out, "user %s added\n", addr)
	return nil
}

// PasswdCmd is `portcullis user passwd ADDRESS [--password-stdin]`.
func PasswdCmd(ctx context.Context, db *DB, address string, pw PasswordInput, out io.Writer) error {
	addr, err := db.canonical(address)
	if err != nil {
		return err
	}
	if ok, err := db.Exists(ctx, addr); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownUser, addr)
	}
	p, err := pw.Read()
	if err != nil {
		return err
	}
	if err := db.SetPassword(ctx, addr, p); err != nil {
		return err
	}
	fmt.Fprintf(out, "password of %s changed\n", addr)
	return nil
}

// DelUserCmd is `portcullis user del ADDRESS`. The user's mail is kept.
func DelUserCmd(ctx context.Context, db *DB, address string, out io.Writer) error {
	addr, err := db.canonical(address)
	if err != nil {
		return err
	}
	if err := db.Delete(ctx, addr); err != nil {
		return err
	}
	fmt.Fprintf(out, "user %s deleted (mail is kept)\n", addr)
	return nil
}

// ListUsersCmd is `portcullis user list`: address, hash scheme and last change.
func ListUsersCmd(ctx context.Context, db *DB, out io.Writer) error {
	users, err := db.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSCHEME\tPASSWORD CHANGED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Address, u.Scheme, u.Updated.Format("2006-01-02 15:04:05Z"))
	}
	return tw.Flush()
}
