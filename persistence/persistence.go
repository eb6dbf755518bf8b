package persistence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

var (
	// ErrUnavailable means the platform protection cannot be used right now:
	// no D-Bus session bus, no Secret Service, a locked keyring or keychain, a
	// keyring that does not answer in time; or the file is sealed by a
	// protection this process does not use (an envelope read by a process on
	// the plaintext fallback, a DPAPI blob outside Windows), which another
	// process can open. The error text says what to install, start or unlock.
	// Nothing is written when this is returned.
	ErrUnavailable = errors.New("persistence: protection unavailable")

	// ErrCorrupt means the file exists but cannot be decrypted or parsed:
	// garbage, a truncated or tampered file, a file sealed with another key,
	// or a key that was deleted from the keyring. The error text names what
	// was found.
	ErrCorrupt = errors.New("persistence: cache file corrupt")
)

// Protector seals and opens the bytes of the cache file. It is the only part
// that differs between platforms: DPAPI on Windows, an AES-256-GCM envelope
// keyed from the OS keyring on macOS and Linux, or nothing (plaintext).
//
// A Protector is safe for concurrent use by multiple goroutines. Every method
// honours ctx; methods that talk to an OS service bound the wait themselves
// when ctx has no deadline.
type Protector interface {
	// Name is "dpapi", "keychain", "secret-service" or "plaintext".
	Name() string
	// Check reports whether the protection can be used now. It is fast and
	// bounded and creates nothing; failures wrap ErrUnavailable.
	Check(ctx context.Context) error
	// Seal returns the file bytes for plaintext.
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	// Open returns the plaintext sealed in sealed: an error wrapping
	// ErrCorrupt when sealed cannot be decrypted, ErrUnavailable when the
	// protection cannot be used.
	Open(ctx context.Context, sealed []byte) ([]byte, error)
	// Probe writes, reads and deletes a probe through the same protection
	// (for a keyring: a separate item). It never touches the cache file.
	Probe(ctx context.Context) error
}

// Format is the format of a cache file's bytes, as detected by File.Read.
type Format string

const (
	// FormatNone: there is no file, or it is empty (an empty cache).
	FormatNone Format = ""
	// FormatPlaintext: the MSAL JSON itself.
	FormatPlaintext Format = "plaintext"
	// FormatEnvelope: this package's AES-256-GCM envelope (see the package
	// documentation for the byte layout), keyed from the OS keyring.
	FormatEnvelope Format = "envelope"
	// FormatDPAPI: a raw Windows DPAPI blob of the MSAL JSON.
	FormatDPAPI Format = "dpapi"
	// FormatUnknown: none of the above.
	FormatUnknown Format = "unknown"
)

// dpapiPrefix starts every DPAPI blob: dwVersion 1, then the provider GUID
// df9d8cd0-1501-11d1-8c7a-00c04fc297eb in its little-endian byte form.
var dpapiPrefix = []byte{
	0x01, 0x00, 0x00, 0x00,
	0xd0, 0x8c, 0x9d, 0xdf, 0x01, 0x15, 0xd1, 0x11,
	0x8c, 0x7a, 0x00, 0xc0, 0x4f, 0xc2, 0x97, 0xeb,
}

// wineDPAPIPrefix starts the blobs of Wine's CryptProtectData, which puts
// "Wine Crypt32 ok" where Windows has the provider GUID. Recognized so that
// the Windows code is tested for real under Wine.
var wineDPAPIPrefix = []byte("\x01\x00\x00\x00Wine Crypt32 ok\x00")

func isDPAPI(b []byte) bool {
	return bytes.HasPrefix(b, dpapiPrefix) || bytes.HasPrefix(b, wineDPAPIPrefix)
}

var utf8BOM = []byte("\xef\xbb\xbf")

// DetectFormat tells from its first bytes which format b is in. It does not
// validate the rest: a truncated file of a known format is still reported as
// that format.
func DetectFormat(b []byte) Format {
	switch {
	case len(b) == 0:
		return FormatUnknown
	case bytes.HasPrefix(b, envelopeMagic[:]):
		return FormatEnvelope
	case isDPAPI(b):
		return FormatDPAPI
	}
	// JSON, possibly after a UTF-8 byte order mark or white space.
	t := bytes.TrimLeft(bytes.TrimPrefix(b, utf8BOM), " \t\r\n")
	if len(t) > 0 && t[0] == '{' {
		return FormatPlaintext
	}
	return FormatUnknown
}

// sealedFormat is implemented by this package's protectors: the format Seal
// produces.
type sealedFormat interface {
	format() Format
}

// formatOf returns the format p seals into, or FormatUnknown for a Protector
// from outside this package.
func formatOf(p Protector) Format {
	if s, ok := p.(sealedFormat); ok {
		return s.format()
	}
	return FormatUnknown
}

// Plaintext returns the Protector that stores the MSAL JSON unencrypted. The
// file is still created 0600 in a 0700 directory. Use it only when asked to.
func Plaintext() Protector { return plaintext{} }

type plaintext struct{}

func (plaintext) Name() string                    { return "plaintext" }
func (plaintext) format() Format                  { return FormatPlaintext }
func (plaintext) Check(context.Context) error     { return nil }
func (plaintext) Probe(ctx context.Context) error { return ctx.Err() }

// Seal returns plaintext itself (not a copy).
func (plaintext) Seal(ctx context.Context, b []byte) ([]byte, error) { return b, ctx.Err() }

// Open returns sealed itself if it is JSON, else an error wrapping ErrCorrupt.
func (plaintext) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sealed = bytes.TrimPrefix(sealed, utf8BOM)
	if err := checkJSON(sealed); err != nil {
		return nil, err
	}
	return sealed, nil
}

// checkJSON returns an error wrapping ErrCorrupt unless b is valid JSON.
func checkJSON(b []byte) error {
	if !json.Valid(b) {
		if len(b) == 0 {
			return fmt.Errorf("%w: the file is empty", ErrCorrupt)
		}
		return fmt.Errorf("%w: the file looks like JSON but does not parse (truncated or torn by a writer?)", ErrCorrupt)
	}
	return nil
}
