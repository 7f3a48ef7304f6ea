package content

import "github.com/portcullis-mail/portcullis/bytesize"

// Limits bound the work done on one message. A zero field takes its default
// (DefaultLimits). Reaching a limit is not an error: the walk stops descending, sets
// Message.Truncated and records a reason code in Message.Errors.
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
	// MaxRatio is the compression ratio above which an archive entry counts as a bomb.
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

// withDefaults returns l with zero fields replaced by the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxHeaderSize <= 0 {
		l.MaxHeaderSize = d.MaxHeaderSize
	}
	if l.MaxDecodedSize <= 0 {
		l.MaxDecodedSize = d.MaxDecodedSize
	}
	if l.MaxTextSize <= 0 {
		l.MaxTextSize = d.MaxTextSize
	}
	if l.MaxURLs <= 0 {
		l.MaxURLs = d.MaxURLs
	}
	if l.MaxArchiveEntries <= 0 {
		l.MaxArchiveEntries = d.MaxArchiveEntries
	}
	if l.MaxArchiveDepth <= 0 {
		l.MaxArchiveDepth = d.MaxArchiveDepth
	}
	if l.MaxUncompressedSize <= 0 {
		l.MaxUncompressedSize = d.MaxUncompressedSize
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	return l
}
