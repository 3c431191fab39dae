package auth

// A namespace opts in to the plaintext legacy listener with this label.
const (
	LegacyNamespaceLabel   = "sluice.dev/legacy-xds"
	LegacyNamespaceEnabled = "enabled"
)
