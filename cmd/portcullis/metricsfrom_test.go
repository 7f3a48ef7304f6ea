package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFromNetworks(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := fromNetworks([]string{"127.0.0.0/8", "::1/128", "192.0.2.7"}, ok)
	for remote, want := range map[string]int{
		"127.0.0.1:5000":        http.StatusOK,
		"[::1]:5000":            http.StatusOK,
		"[::ffff:127.0.0.2]:80": http.StatusOK,
		"192.0.2.7:1":           http.StatusOK,
		"192.0.2.8:1":           http.StatusForbidden,
		"[2001:db8::1]:1":       http.StatusForbidden,
		"garbage":               http.StatusForbidden,
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", remote, w.Code, want)
		}
	}
}
