// Package signatures owns everything rugwatch trusts about bytes: the strict
// parse of hostile JSON, its RFC 8785 (JCS) canonical form, the
// "sha256:<hex>" digest of that form, approver keys (ed25519, through
// sigstore), signed approval envelopes (DSSE) and their verification.
//
// Canonical is the only way a digest is made. It refuses, as *HostileError,
// input that two parsers could read differently: duplicate object keys,
// invalid UTF-8, escaped lone surrogates, trailing data, and input beyond
// its Limits. Such input is reported, never hashed.
//
// The package never holds more than the key it is handed: a Signer wraps the
// one private key its caller loaded, a Verifier only the public keys passed
// to NewVerifier. It keeps no key cache, reads no environment, and never puts
// a password or key material into an error.
package signatures
