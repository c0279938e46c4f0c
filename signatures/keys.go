package signatures

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// File names GenerateKeyPair writes in its directory.
const (
	PrivateKeyFile = "approver.key"
	PublicKeyFile  = "approver.pub"
)

// maxKeyFile bounds how much of a key file is read; a PEM ed25519 key is
// a few hundred bytes, an encrypted one under 1 KiB.
const maxKeyFile = 64 << 10

// ErrBadPassword is returned when an encrypted key does not decrypt.
var ErrBadPassword = errors.New("wrong password or corrupt encrypted key")

// PublicKey is one approver's public key and its id.
type PublicKey struct {
	ID  string // "sha256:<hex of SHA-256 of the PKIX DER public key>"
	Key crypto.PublicKey
}

// KeyID returns "sha256:<hex>" of the PKIX DER encoding of pub.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Signer signs approvals with the one private key it was loaded with.
type Signer struct {
	s     signature.Signer
	pub   PublicKey
	keyID string
}

// NewSigner wraps an ed25519 private key already in memory.
func NewSigner(priv crypto.PrivateKey) (*Signer, error) {
	edPriv, ok := priv.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load signer: approver keys are ed25519, got %T", priv)
	}
	s, err := signature.LoadSigner(edPriv, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	pub := edPriv.Public()
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{s: s, pub: PublicKey{ID: id, Key: pub}, keyID: id}, nil
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey is the signer's public half, ready for NewVerifier.
func (s *Signer) PublicKey() PublicKey { return s.pub }

// GenerateKeyPair writes dir/approver.key (0600 PEM, encrypted when password
// is non-empty) and dir/approver.pub (0644 PEM) and returns the key id. It
// refuses to overwrite either file.
func GenerateKeyPair(dir string, password []byte) (keyID string, err error) {
	return WriteKeyPair(filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile), password)
}

// WriteKeyPair is GenerateKeyPair with explicit paths.
func WriteKeyPair(privPath, pubPath string, password []byte) (keyID string, err error) {
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("write key pair: %s already exists; refusing to overwrite", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("write key pair: check %s: %w", p, err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	privPEM, err := encodePrivateKey(priv, password)
	if err != nil {
		return "", err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	if keyID, err = KeyID(pub); err != nil {
		return "", err
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return "", fmt.Errorf("write private key: %w", err)
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		// A private key without its public half is no use to anyone.
		_ = os.Remove(privPath)
		return "", fmt.Errorf("write public key: %w", err)
	}
	return keyID, nil
}

func encodePrivateKey(priv ed25519.PrivateKey, password []byte) ([]byte, error) {
	if len(password) == 0 {
		b, err := cryptoutils.MarshalPrivateKeyToPEM(priv)
		if err != nil {
			return nil, fmt.Errorf("encode private key: %w", err)
		}
		return b, nil
	}
	// The same scrypt + secretbox container cosign writes.
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, der), nil
}

// writeNew writes data to path atomically: a temp file in the same
// directory, created with mode, synced, then hard-linked into place so that
// an existing path is never replaced, even by a racing writer.
func writeNew(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := createTemp(dir, filepath.Base(path), mode)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp)
	}()
	// umask may have narrowed mode; it must never be wider, and the public
	// key must be readable as promised.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	f = nil
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite", path)
		}
		return fmt.Errorf("link %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func createTemp(dir, base string, mode os.FileMode) (*os.File, error) {
	for range 10 {
		var rnd [8]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create temp file in %s: %w", dir, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("create temp file in %s: too many collisions", dir)
}

// LoadPrivateKey loads an approver private key. password is called only
// when the PEM is encrypted. A key file whose mode allows group or other
// access is refused.
func LoadPrivateKey(path string, password func() ([]byte, error)) (*Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open private key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat private key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("private key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("private key %s has mode %#o, which allows group/other access; run chmod 600 %s", path, perm, path)
	}
	data, err := readBounded(f)
	if err != nil {
		return nil, fmt.Errorf("read private key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("private key %s: no PEM block", path)
	}
	if legacyEncryptedPEM(block) {
		return nil, fmt.Errorf("private key %s uses legacy PEM encryption (RFC 1423), which is unauthenticated and open to padding-oracle attacks; convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc` or generate a new one with `rugwatch keys generate`", path)
	}
	var pf cryptoutils.PassFunc
	if encryptedPEM(block) {
		if password == nil {
			return nil, fmt.Errorf("private key %s is encrypted and no password source was given", path)
		}
		pw, err := password()
		if err != nil {
			return nil, fmt.Errorf("read password for %s: %w", path, err)
		}
		if pw == nil {
			// sigstore skips decryption on a nil password and then fails
			// to parse ciphertext; an empty one decrypts (and fails) properly.
			pw = []byte{}
		}
		pf = cryptoutils.StaticPasswordFunc(pw)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, pf)
	if err != nil {
		if pf != nil {
			return nil, fmt.Errorf("private key %s: %w", path, ErrBadPassword)
		}
		return nil, fmt.Errorf("parse private key %s: %w", path, err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return s, nil
}

func encryptedPEM(b *pem.Block) bool {
	switch b.Type {
	case string(cryptoutils.EncryptedSigstorePrivateKeyPEMType),
		"ENCRYPTED COSIGN PRIVATE KEY",
		"ENCRYPTED PRIVATE KEY":
		return true
	}
	return false
}

// legacyEncryptedPEM reports an RFC 1423 encrypted block (a Proc-Type
// header saying ENCRYPTED), the test x509.IsEncryptedPEMBlock made before
// its deprecation. rugwatch never wrote such keys (GenerateKeyPair writes
// PKCS#8, plain or sigstore-encrypted), and sigstore would decrypt one
// without authenticating it, so they are refused before any password is
// asked for.
func legacyEncryptedPEM(b *pem.Block) bool {
	return strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
}

// LoadPublicKey loads one approver public key (PEM, PKIX, ed25519).
func LoadPublicKey(path string) (PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("open public key: %w", err)
	}
	defer f.Close()
	data, err := readBounded(f)
	if err != nil {
		return PublicKey{}, fmt.Errorf("read public key %s: %w", path, err)
	}
	pk, err := ParsePublicKey(data)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return pk, nil
}

// ParsePublicKey parses a PEM public key and computes its id.
func ParsePublicKey(pemBytes []byte) (PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return PublicKey{}, fmt.Errorf("parse PEM public key: %w", err)
	}
	if _, ok := pub.(ed25519.PublicKey); !ok {
		return PublicKey{}, fmt.Errorf("approver keys are ed25519, got %T", pub)
	}
	id, err := KeyID(pub)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{ID: id, Key: pub}, nil
}

// LoadPublicKeys loads every path; the first failure names its file.
func LoadPublicKeys(paths []string) ([]PublicKey, error) {
	keys := make([]PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// MarshalPublicKey returns the PEM form of a public key, for export.
func MarshalPublicKey(k PublicKey) ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(k.Key)
}

func readBounded(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file")
	}
	return data, nil
}
