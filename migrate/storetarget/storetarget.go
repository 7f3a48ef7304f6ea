// Package storetarget is migrate's Target over portcullis's store: one user's
// mailboxes, written through the same code paths as delivery and IMAP APPEND (fsynced
// files, group-committed index), so a migration may run beside a serving server.
package storetarget

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/portcullis-mail/portcullis/migrate"
	"github.com/portcullis-mail/portcullis/store"
)

// Target is one user of a store. Close it when done.
type Target struct {
	u *store.User
}

var _ migrate.Target = (*Target)(nil)

// Open opens user's mailboxes (creating the user's maildir and index on first use).
func Open(ctx context.Context, s *store.Store, user string) (*Target, error) {
	u, err := s.Open(ctx, user)
	if err != nil {
		return nil, err
	}
	return &Target{u: u}, nil
}

// Close releases the user.
func (t *Target) Close() { t.u.Release() }

// Folders lists the user's folders.
func (t *Target) Folders(ctx context.Context) ([]migrate.TargetFolder, error) {
	mbs, err := t.u.Mailboxes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]migrate.TargetFolder, len(mbs))
	for i, mb := range mbs {
		out[i] = folder(mb)
	}
	return out, nil
}

func folder(mb store.Mailbox) migrate.TargetFolder {
	return migrate.TargetFolder{Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext}
}

// Create makes the folder (and its parents) unless it exists.
func (t *Target) Create(ctx context.Context, name, specialUse string) error {
	if _, err := t.u.Mailbox(ctx, name); err == nil {
		return nil
	}
	err := t.u.Create(ctx, name, specialUse)
	if errors.Is(err, store.ErrMailboxExists) {
		return nil
	}
	return err
}

// Subscribe subscribes the folder.
func (t *Target) Subscribe(ctx context.Context, name string) error {
	return t.u.SetSubscribed(ctx, name, true)
}

// Folder returns the folder's record.
func (t *Target) Folder(ctx context.Context, name string) (migrate.TargetFolder, error) {
	mb, err := t.u.Mailbox(ctx, name)
	if err != nil {
		return migrate.TargetFolder{}, err
	}
	return folder(mb), nil
}

// KeepUIDs gives a never used folder the source's UIDVALIDITY.
func (t *Target) KeepUIDs(ctx context.Context, name string, uidValidity uint32) (bool, error) {
	return t.u.KeepUIDs(ctx, name, uidValidity)
}

// Prepare writes a message's file with m's flags and date.
func (t *Target) Prepare(ctx context.Context, name string, r io.Reader, m migrate.SourceMessage, wantUID uint32) (migrate.Prepared, error) {
	p, err := t.u.Prepare(ctx, name, r, m.Flags, m.Date, wantUID)
	if err != nil {
		return nil, err
	}
	return prepared{p: p, uidl: m.UIDL}, nil
}

type prepared struct {
	p    *store.Prepared
	uidl string
}

// Commit indexes prepared messages in order and records their UIDLs.
func (t *Target) Commit(ctx context.Context, name string, ps []migrate.Prepared) ([]uint32, []error) {
	sps := make([]*store.Prepared, len(ps))
	for i, p := range ps {
		sps[i] = p.(prepared).p
	}
	res, errs := t.u.CommitPrepared(ctx, sps)
	uids := make([]uint32, len(ps))
	uidls := map[uint32]string{}
	for i := range ps {
		uids[i] = res[i].UID
		if u := ps[i].(prepared).uidl; errs[i] == nil && store.ValidUIDL(u) {
			uidls[res[i].UID] = u
		}
	}
	if len(uidls) > 0 {
		mb, err := t.u.Mailbox(ctx, name)
		if err == nil {
			err = t.u.SetUIDLs(ctx, mb, uidls)
		}
		if err != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	return uids, errs
}

// Messages lists the folder's messages (after picking up changes on disk).
func (t *Target) Messages(ctx context.Context, name string) ([]migrate.TargetMessage, error) {
	_, ms, err := t.u.Messages(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]migrate.TargetMessage, len(ms))
	for i, m := range ms {
		out[i] = migrate.TargetMessage{UID: m.UID, Size: m.Size, Flags: m.Flags}
	}
	return out, nil
}

func (t *Target) message(ctx context.Context, name string, uid uint32) (store.Mailbox, store.Message, error) {
	mb, err := t.u.Mailbox(ctx, name)
	if err != nil {
		return mb, store.Message{}, err
	}
	ms, err := t.u.MessagesByUIDWithoutEnvelope(ctx, mb, []uint32{uid})
	if err != nil {
		return mb, store.Message{}, err
	}
	if len(ms) == 0 {
		return mb, store.Message{}, fmt.Errorf("%w: uid %d in %q", store.ErrNoMessage, uid, name)
	}
	return mb, ms[0], nil
}

// Open opens a message's bytes.
func (t *Target) Open(ctx context.Context, name string, uid uint32) (io.ReadCloser, error) {
	mb, m, err := t.message(ctx, name, uid)
	if err != nil {
		return nil, err
	}
	return t.u.Open(mb, m)
}

// Repair sets flags, internal date and UIDL of an adopted message to m's.
func (t *Target) Repair(ctx context.Context, name string, uid uint32, m migrate.SourceMessage) error {
	mb, _, err := t.message(ctx, name, uid)
	if err != nil {
		return err
	}
	if _, err := t.u.SetFlags(ctx, mb, []uint32{uid}, store.FlagsReplace, m.Flags, nil); err != nil {
		return err
	}
	if !m.Date.IsZero() {
		if err := t.u.SetInternalDate(ctx, mb, uid, m.Date); err != nil {
			return err
		}
	}
	if m.UIDL != "" && store.ValidUIDL(m.UIDL) {
		return t.u.SetUIDL(ctx, mb, uid, m.UIDL)
	}
	return nil
}

// SetFlags replaces a message's flags.
func (t *Target) SetFlags(ctx context.Context, name string, uid uint32, flags []string) error {
	mb, err := t.u.Mailbox(ctx, name)
	if err != nil {
		return err
	}
	_, err = t.u.SetFlags(ctx, mb, []uint32{uid}, store.FlagsReplace, flags, nil)
	return err
}

// Remove deletes messages whatever their flags.
func (t *Target) Remove(ctx context.Context, name string, uids []uint32) error {
	mb, err := t.u.Mailbox(ctx, name)
	if err != nil {
		return err
	}
	_, err = t.u.Remove(ctx, mb, uids)
	return err
}
