package content

import (
	"errors"

	"github.com/portcullis-mail/portcullis/bytesize"
)

// Limits bound the work done on one message. A zero field takes its default
// (DefaultLimits). Reaching a limit is not an error: the walk stops descending there,
// names the limit (by its key, such as "max_parts") in Message.LimitsHit, records a code
// in Message.Errors and, unless the limit only cuts what is kept for rules (MaxTextSize,
// MaxURLs), sets Message.Truncated: content was left unexamined, so the message is
// unknown, never clean.
type Limits struct {
	// MaxSize is the largest message Walk reads; a longer one is an error.
	MaxSize bytesize.Size `yaml:"max_size"`
	// MaxParts is the number of MIME entities (parts, multiparts and attached messages)
	// walked.
	MaxParts int `yaml:"max_parts"`
	// MaxDepth is the nesting depth of multiparts and attached messages.
	MaxDepth int `yaml:"max_depth"`
	// MaxHeaderSize bounds each entity's header; fields past it are not recorded.
	MaxHeaderSize bytesize.Size `yaml:"max_header_size"`
	// MaxDecodedSize bounds the bytes produced by transfer decoding over the whole
	// message (base64, quoted-printable), including attached messages.
	MaxDecodedSize bytesize.Size `yaml:"max_decoded_size"`
	// MaxTextSize bounds Message.Text, the body text kept for rules and classifiers.
	MaxTextSize bytesize.Size `yaml:"max_text_size"`
	// MaxURLs bounds the distinct URLs kept.
	MaxURLs int `yaml:"max_urls"`
	// MaxArchiveEntries bounds the entries listed in one message's archives in total.
	MaxArchiveEntries int `yaml:"max_archive_entries"`
	// MaxArchiveDepth is how deep archives inside archives are opened (1: only the
	// attached archive itself).
	MaxArchiveDepth int `yaml:"max_archive_depth"`
	// MaxUncompressedSize bounds the bytes decompressed from archives in total (nested
	// archives are decompressed to be listed; other entries only to sniff their start).
	MaxUncompressedSize bytesize.Size `yaml:"max_uncompressed_size"`
	// MaxRatio is the expansion ratio above which an archive is a bomb: the bytes a
	// compressed stream produced over the bytes it consumed, checked while it is read;
	// an entry's declared size over its compressed size; and, at every level of
	// nesting, everything an archive expands to (nested archives included) over its own
	// size. Expansions under 1 MiB are never bombs.
	MaxRatio int `yaml:"max_ratio"`
}

// DefaultLimits are the limits used for zero fields.
var DefaultLimits = Limits{
	MaxSize:             64 << 20,
	MaxParts:            500,
	MaxDepth:            16,
	MaxHeaderSize:       256 << 10,
	MaxDecodedSize:      64 << 20,
	MaxTextSize:         1 << 20,
	MaxURLs:             500,
	MaxArchiveEntries:   1000,
	MaxArchiveDepth:     3,
	MaxUncompressedSize: 32 << 20,
	MaxRatio:            100,
}

// ErrTooLarge is returned (wrapped) by WalkBytes for a message larger than MaxSize.
var ErrTooLarge = errors.New("content: message exceeds max_size")

// withDefaults returns l with zero (or negative) fields replaced by the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	orDefault(&l.MaxSize, d.MaxSize)
	orDefault(&l.MaxParts, d.MaxParts)
	orDefault(&l.MaxDepth, d.MaxDepth)
	orDefault(&l.MaxHeaderSize, d.MaxHeaderSize)
	orDefault(&l.MaxDecodedSize, d.MaxDecodedSize)
	orDefault(&l.MaxTextSize, d.MaxTextSize)
	orDefault(&l.MaxURLs, d.MaxURLs)
	orDefault(&l.MaxArchiveEntries, d.MaxArchiveEntries)
	orDefault(&l.MaxArchiveDepth, d.MaxArchiveDepth)
	orDefault(&l.MaxUncompressedSize, d.MaxUncompressedSize)
	orDefault(&l.MaxRatio, d.MaxRatio)
	return l
}

// orDefault sets *v to def when it is not positive.
func orDefault[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// The limit keys that Message.LimitsHit names, as in the policy's configuration.
const (
	LimitSize             = "max_size"
	LimitParts            = "max_parts"
	LimitDepth            = "max_depth"
	LimitHeaderSize       = "max_header_size"
	LimitDecodedSize      = "max_decoded_size"
	LimitTextSize         = "max_text_size"
	LimitURLs             = "max_urls"
	LimitArchiveEntries   = "max_archive_entries"
	LimitArchiveDepth     = "max_archive_depth"
	LimitUncompressedSize = "max_uncompressed_size"
	LimitRatio            = "max_ratio"
)

// limitCodes maps each limit to the code recorded in Message.Errors.
var limitCodes = map[string]string{
	LimitSize:             "too_large",
	LimitParts:            "too_many_parts",
	LimitDepth:            "too_deep",
	LimitHeaderSize:       "header_too_long",
	LimitDecodedSize:      "decoded_limit",
	LimitTextSize:         "text_limit",
	LimitURLs:             "url_limit",
	LimitArchiveEntries:   "archive_limit",
	LimitArchiveDepth:     "archive_limit",
	LimitUncompressedSize: "archive_limit",
	LimitRatio:            "zip_bomb",
}

// truncates reports whether reaching limit leaves content unexamined. MaxTextSize and
// MaxURLs only bound what is kept for rules and classifiers; every attachment is still
// walked past them.
func truncates(limit string) bool { return limit != LimitTextSize && limit != LimitURLs }
