package storetarget

import (
	"context"

	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/store"
)

// Scripts is migrate's ScriptTarget over a user's Sieve scripts in the store (the ones
// ManageSieve serves and delivery runs), within the configured limits.
type Scripts struct {
	S   *store.Scripts
	Lim store.ScriptLimits
}

var _ migrate.ScriptTarget = Scripts{}

// PutScript stores a script (replacing one of the same name).
func (s Scripts) PutScript(ctx context.Context, name string, text []byte) error {
	return s.S.Put(ctx, name, text, s.Lim)
}

// SetActive makes the script the active one.
func (s Scripts) SetActive(ctx context.Context, name string) error { return s.S.SetActive(ctx, name) }
