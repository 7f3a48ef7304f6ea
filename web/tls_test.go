package web

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
)

// Under TLS the session cookie is __Host-prefixed and Secure, and HSTS is sent.
func TestCookiesUnderTLS(t *testing.T) {
	r := newRig(t)
	ts := httptest.NewTLSServer(r.srv)
	defer ts.Close()
	jar, _ := cookiejar.New(nil)
	hc := ts.Client()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS under TLS")
	}
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		t.Fatal("no login form token")
	}
	resp, err = hc.PostForm(ts.URL+"/login", url.Values{"csrf": {string(m[1])}, "username": {"alice@example.test"}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var got *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-portcullis" {
			got = c
		}
	}
	if got == nil || !got.Secure || !got.HttpOnly || got.SameSite != http.SameSiteStrictMode || got.Path != "/" || got.Domain != "" {
		t.Fatalf("session cookie under TLS: %+v (all: %v)", got, resp.Cookies())
	}
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login under TLS: %d", resp.StatusCode)
	}
}
