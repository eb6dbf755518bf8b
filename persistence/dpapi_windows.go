package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// DPAPI returns the Windows Protector: the file is the raw DPAPI blob of the
// MSAL JSON (CryptProtectData, CurrentUser scope, no entropy, no
// description, CRYPTPROTECT_UI_FORBIDDEN), the format the sister libraries
// (MSAL .NET, Python, Node extensions) read and write. Only the same Windows
// user can decrypt it; a profile moved to another machine or a reset
// password makes it undecryptable (ErrCorrupt).
func DPAPI() Protector { return dpapi{} }

type dpapi struct{}

func (dpapi) Name() string   { return "dpapi" }
func (dpapi) format() Format { return FormatDPAPI }

// Check protects and unprotects a few bytes: DPAPI fails for profiles
// without user credentials (some service accounts).
func (d dpapi) Check(ctx context.Context) error { return d.Probe(ctx) }

// Probe runs a protect/unprotect round trip in memory.
func (dpapi) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	want := []byte("msalcache probe")
	blob, err := dpapiProtect(want)
	if err != nil {
		return err
	}
	got, err := dpapiUnprotect(blob)
	if err != nil {
		return fmt.Errorf("%w: dpapi: the probe does not decrypt: %v", ErrUnavailable, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: dpapi: the probe decrypts to other bytes", ErrUnavailable)
	}
	return nil
}

func (dpapi) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return dpapiProtect(plaintext)
}

func (dpapi) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !isDPAPI(sealed) {
		return nil, fmt.Errorf("%w: not a DPAPI blob", ErrCorrupt)
	}
	pt, err := dpapiUnprotect(sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: the DPAPI blob does not decrypt (%v): it was written by another Windows user or machine, the user profile was moved or its password reset, or it is damaged", ErrCorrupt, err)
	}
	return pt, nil
}

// blobOf points a DataBlob at b. An empty b still gets a valid pointer:
// DPAPI rejects a NULL pbData.
func blobOf(b []byte) *windows.DataBlob {
	if len(b) == 0 {
		return &windows.DataBlob{Data: new(byte)}
	}
	return &windows.DataBlob{Size: uint32(len(b)), Data: &b[0]}
}

// takeBlob copies out what DPAPI allocated, wipes it (it may be plaintext)
// and frees it with LocalFree.
func takeBlob(out windows.DataBlob) []byte {
	if out.Data == nil {
		return []byte{}
	}
	defer windows.LocalFree(windows.Handle(unsafe.Pointer(out.Data)))
	src := unsafe.Slice(out.Data, out.Size)
	b := make([]byte, len(src))
	copy(b, src)
	clear(src)
	return b
}

func dpapiProtect(plaintext []byte) ([]byte, error) {
	if uint64(len(plaintext)) > 1<<31 {
		return nil, errors.New("persistence: dpapi: cache too large")
	}
	var out windows.DataBlob
	err := windows.CryptProtectData(blobOf(plaintext), nil, nil, 0, nil, windows.CRYPTPROTECT_UI_FORBIDDEN, &out)
	if err != nil {
		return nil, fmt.Errorf("%w: dpapi: CryptProtectData: %v", ErrUnavailable, err)
	}
	return takeBlob(out), nil
}

func dpapiUnprotect(blob []byte) ([]byte, error) {
	var out windows.DataBlob
	err := windows.CryptUnprotectData(blobOf(blob), nil, nil, 0, nil, windows.CRYPTPROTECT_UI_FORBIDDEN, &out)
	if err != nil {
		return nil, err
	}
	return takeBlob(out), nil
}
