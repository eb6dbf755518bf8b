package msalcache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/persistence"
)

// TestOtherProtectionsFile: a plaintext Cache (say, on the plaintext
// fallback) finds a file sealed by a protection it does not use: an
// envelope (the keyring of a desktop session), a DPAPI blob (Windows). The
// file is not corrupt, since a process with that protection reads it: it
// is neither copied aside nor overwritten, and every call that needs it
// fails with an error wrapping persistence.ErrUnavailable that says what to
// do.
func TestOtherProtectionsFile(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"an envelope", []byte("MSALCENV\x01\x00\x00\x00\x00\x00\x00\x00\x00somethingsomethingsomething")},
		{"a DPAPI blob", dpapiBlobLike()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startIDP(t)
			path := filepath.Join(testdir.New(t), "msal.cache")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			app := mustApp(t, s, openCache(t, path, plaintextMode))
			ctx := testCtx(t)
			_, err := app.Accounts(ctx)
			if !errors.Is(err, persistence.ErrUnavailable) || errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("Accounts: %v; want an error wrapping ErrUnavailable, not ErrCorrupt", err)
			} else if !strings.Contains(err.Error(), "cache path of its own") {
				t.Errorf("Accounts: %v; the error does not say what to do", err)
			}
			if _, err := passwordSignIn(ctx, app, "user@contoso.example", scope("a")); !errors.Is(err, persistence.ErrUnavailable) {
				t.Errorf("sign-in: %v; want an error wrapping ErrUnavailable", err)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, tt.data) {
				t.Errorf("the file was changed: now %d bytes, %s (%v)", len(got), persistence.DetectFormat(got), err)
			}
			if copies := quarantined(t, path); len(copies) != 0 {
				t.Errorf("the file was copied aside as corrupt: %v", copies)
			}
		})
	}
}
