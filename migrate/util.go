package migrate

import (
	"encoding/base64"
	"sort"
)

func sortSlice(ms []SourceMessage) {
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].UID < ms[j].UID })
}

// plainResponse is a SASL PLAIN initial response (RFC 4616 §2).
func plainResponse(authz, authc, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + authc + "\x00" + pass))
}
