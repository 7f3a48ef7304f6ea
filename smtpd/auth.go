package smtpd

import "github.com/emersion/go-sasl"

// loginServer is the server side of the obsolete but widespread LOGIN SASL mechanism
// (draft-murchison-sasl-login): the server asks "Username:" then "Password:", each
// answered in base64. go-sasl has only the client side.
type loginServer struct {
	step         int
	user         string
	authenticate func(user, pass string) error
}

var _ sasl.Server = (*loginServer)(nil)

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 { // no initial response
			return []byte("Username:"), false, nil
		}
		fallthrough // AUTH LOGIN <base64 user>
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.user, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
