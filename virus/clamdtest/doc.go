// Package clamdtest runs a real clamd for tests, with a small local signature database
// (the official one cannot be downloaded in CI), and a scripted fake clamd for the error
// paths a real daemon does not produce on demand (garbage, a reply that never comes, a
// reply cut short).
//
// StartClamd needs the clamd binary (Debian: clamav-daemon) and, for the ClamExe signature,
// clamav-testfiles. Without them the test fails in CI and is skipped elsewhere
// (internal/testenv).
package clamdtest
