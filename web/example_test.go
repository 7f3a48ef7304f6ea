package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/portcullis-mail/portcullis/internal/statedb"
	"github.com/portcullis-mail/portcullis/web"
)

// users is a one-user Authenticator; a server passes auth.Service.Auth.
type users map[string]string

func (u users) Authenticate(_ context.Context, user, pass string, _ netip.Addr) (string, error) {
	if p, ok := u[user]; ok && p == pass {
		return user, nil
	}
	return "", errors.New("invalid credentials")
}

// owner says each user owns their own address alone; a server passes *route.Router.
type owner struct{}

func (owner) Owns(_ context.Context, user, addr string) (bool, error) {
	return strings.EqualFold(user, addr), nil
}

// The page mounted on a mux beside other handlers; without a quarantine or decision log
// it offers the login and the pages say what is not enabled.
func Example() {
	dir, _ := os.MkdirTemp("", "web-example-")
	defer os.RemoveAll(dir)
	// The sessions live in a SQLite file (or the shared PostgreSQL database: Postgres).
	state, err := web.OpenState(context.Background(), statedb.Config{Path: filepath.Join(dir, "web.db")})
	if err != nil {
		panic(err)
	}
	defer state.Close()
	// The keys that sign the digest's links live in a file, not in the database: a
	// SQLite state creates it (mode 0600) at the first start.
	page, err := web.New(web.Config{Admins: []string{"postmaster@example.test"}, SecretFile: filepath.Join(dir, "web.secret")},
		web.Deps{Auth: users{"alice@example.test": "secret"}, Owner: owner{}, State: state})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", page)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/login", nil))
	fmt.Println(rec.Code, rec.Header().Get("X-Frame-Options"), strings.Contains(rec.Body.String(), `name="csrf"`))
	// Output: 200 DENY true
}
