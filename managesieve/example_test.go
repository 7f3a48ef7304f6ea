package managesieve_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/portcullis-mail/portcullis/managesieve"
	"github.com/portcullis-mail/portcullis/store"
)

// checker accepts scripts that end with a semicolon; portcullis serve checks them with
// the sieve package's compiler.
type checker struct{}

func (checker) Check(script []byte) (string, error) {
	if !strings.HasSuffix(strings.TrimSpace(string(script)), ";") {
		return "", fmt.Errorf("line 1: error: expected ';'")
	}
	return "", nil
}

func (checker) Extensions() []string { return []string{"fileinto", "vacation"} }

type users struct{}

func (users) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if user == "alice@example.org" && pass == "secret" {
		return user, nil
	}
	return "", fmt.Errorf("bad password")
}

func Example() {
	dir, _ := os.MkdirTemp("", "managesieve")
	defer os.RemoveAll(dir)
	st, _ := store.New(store.Config{Dir: dir})
	defer st.Close()
	srv, err := managesieve.New(managesieve.Config{Trusted: true, Implementation: "example"},
		managesieve.Deps{Store: st, Auth: users{}, Checker: checker{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	client, server := net.Pipe()
	go srv.ServeConn(context.Background(), server)
	r := bufio.NewReader(client)
	// say sends a command and prints the response up to its OK, NO or BYE line.
	say := func(cmd string) {
		if cmd != "" {
			fmt.Fprint(client, cmd+"\r\n")
		}
		for {
			l, _ := r.ReadString('\n')
			l = strings.TrimRight(l, "\r\n")
			fmt.Println(l)
			if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
				return
			}
		}
	}
	say("") // the greeting: capabilities, then OK
	say(`AUTHENTICATE "PLAIN" "AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA=="`)
	say(`PUTSCRIPT "away" {6+}` + "\r\nkeep;;")
	say(`PUTSCRIPT "bad" "keep"`)
	say(`SETACTIVE "away"`)
	say(`LISTSCRIPTS`)
	say(`LOGOUT`)
	// Output:
	// "IMPLEMENTATION" "example"
	// "SASL" "PLAIN"
	// "SIEVE" "fileinto vacation"
	// "UNAUTHENTICATE"
	// "VERSION" "1.0"
	// OK
	// OK
	// OK
	// NO "line 1: error: expected ';'"
	// OK
	// "away" ACTIVE
	// OK
	// OK
}
