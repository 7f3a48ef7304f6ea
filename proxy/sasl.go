package proxy

import (
	"bytes"
	"encoding/base64"
	"errors"
)

// decodePlain decodes a SASL PLAIN response (RFC 4616 §2: [authzid] NUL authcid NUL
// passwd, base64 in IMAP and POP3). An authorization identity other than the user is
// refused: the proxy does not let one user act as another.
func decodePlain(b64 string) (user, password string, err error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", errors.New("invalid base64")
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return "", "", errors.New("malformed PLAIN response")
	}
	authz, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	if user == "" || password == "" {
		return "", "", errors.New("empty user name or password")
	}
	if authz != "" && authz != user {
		return "", "", errors.New("authorization identity differs from the user")
	}
	return user, password, nil
}

// encodePlain is the PLAIN response for user and password.
func encodePlain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}
