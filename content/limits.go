package content

// Limits bound the work done on one message. A zero field takes its default
// (DefaultLimits). Reaching a limit is not an error: the walk stops descending, sets
// Message.Truncated and records a reason code in Message.Errors.
type Limits struct {
	// MaxBytes is the largest message Walk reads; a longer one is an error.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxParts is the number of MIME entities (parts, multiparts and attached messages)
	// walked.
	MaxParts int `yaml:"max_parts"`
	// MaxDepth is the nesting depth of multiparts and attached messages.
	MaxDepth int `yaml:"max_depth"`
	// MaxHeaderBytes bounds each entity's header; fields past it are not recorded.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxDecodedBytes bounds the bytes produced by transfer decoding over the whole
	// message (base64, quoted-printable), including attached messages.
	MaxDecodedBytes int64 `yaml:"max_decoded_bytes"`
	// MaxTextBytes bounds Message.Text, the body text kept for rules and classifiers.
	MaxTextBytes int `yaml:"max_text_bytes"`
	// MaxURLs bounds the distinct URLs kept.
	MaxURLs int `yaml:"max_urls"`
	// MaxArchiveEntries bounds the entries listed in one message's archives in total.
	MaxArchiveEntries int `yaml:"max_archive_entries"`
	// MaxArchiveDepth is how deep archives inside archives are opened (1: only the
	// attached archive itself).
	MaxArchiveDepth int `yaml:"max_archive_depth"`
	// MaxUncompressedBytes bounds the bytes decompressed from archives in total (nested
	// archives are decompressed to be listed; other entries only to sniff their start).
	MaxUncompressedBytes int64 `yaml:"max_uncompressed_bytes"`
	// MaxRatio is the compression ratio above which an archive entry counts as a bomb.
	MaxRatio int `yaml:"max_ratio"`
}

// DefaultLimits are the limits used for zero fields.
var DefaultLimits = Limits{
	MaxBytes:             64 << 20,
	MaxParts:             500,
	MaxDepth:             16,
	MaxHeaderBytes:       256 << 10,
	MaxDecodedBytes:      64 << 20,
	MaxTextBytes:         1 << 20,
	MaxURLs:              500,
	MaxArchiveEntries:    1000,
	MaxArchiveDepth:      3,
	MaxUncompressedBytes: 32 << 20,
	MaxRatio:             100,
}

// withDefaults returns l with zero fields replaced by the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxDecodedBytes <= 0 {
		l.MaxDecodedBytes = d.MaxDecodedBytes
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
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
	if l.MaxUncompressedBytes <= 0 {
		l.MaxUncompressedBytes = d.MaxUncompressedBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	return l
}
