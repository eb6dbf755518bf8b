package persistence

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testdir"
)

// These run the real DPAPI: on Windows, or under Wine (scripts/wintest.sh).

func TestDPAPIRoundTrip(t *testing.T) {
	p := DPAPI()
	ctx := context.Background()
	if p.Name() != "dpapi" {
		t.Errorf("Name = %q", p.Name())
	}
	if err := p.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := p.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	for _, pt := range [][]byte{{}, []byte("{}"), secretJSON, bytes.Repeat(secretJSON, 20000)} {
		sealed := mustSeal(t, p, pt)
		if DetectFormat(sealed) != FormatDPAPI {
			t.Fatalf("a DPAPI blob is not detected as one: % x", sealed[:min(len(sealed), 24)])
		}
		if len(pt) > 0 && bytes.Contains(sealed, []byte("a-very-secret")) {
			t.Fatal("the blob holds the plaintext")
		}
		got, err := p.Open(ctx, sealed)
		if err != nil {
			t.Fatalf("Open(%d bytes): %v", len(pt), err)
		}
		if !bytes.Equal(got, pt) || got == nil {
			t.Fatalf("Open = %.40q (nil %v), want %.40q", got, got == nil, pt)
		}
	}
}

func TestDPAPITampered(t *testing.T) {
	p := DPAPI()
	sealed := mustSeal(t, p, secretJSON)
	// The version, the provider id, the encrypted data and the signature at
	// the end. (Not the master key GUID: Wine ignores it, Windows does not.)
	for _, i := range []int{0, 5, len(sealed) / 2, len(sealed) - 30, len(sealed) - 1} {
		b := bytes.Clone(sealed)
		b[i] ^= 0x40
		if _, err := p.Open(context.Background(), b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d of %d flipped: Open = %v, want ErrCorrupt", i, len(sealed), err)
		}
	}
	for _, n := range []int{0, 20, len(sealed) / 2, len(sealed) - 1} {
		if _, err := p.Open(context.Background(), sealed[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d: Open = %v, want ErrCorrupt", n, err)
		}
	}
}

func TestDPAPIFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(testdir.New(t), "cache.bin")
	// A plaintext file left by a fallback is read and rewritten as DPAPI.
	mustWrite(t, mustNewFile(t, path, Plaintext()), secretJSON)
	f := mustNewFile(t, path, DPAPI())
	got, _, fm, err := f.ReadFormat(ctx)
	if err != nil || fm != FormatPlaintext || !bytes.Equal(got, secretJSON) {
		t.Fatalf("ReadFormat of a plaintext file = %q, %q, %v", got, fm, err)
	}
	v := mustWrite(t, f, got)
	raw, _ := os.ReadFile(path)
	if DetectFormat(raw) != FormatDPAPI {
		t.Fatal("not rewritten as DPAPI")
	}
	got, rv, fm, err := f.ReadFormat(ctx)
	if err != nil || fm != FormatDPAPI || !bytes.Equal(got, secretJSON) || rv != v {
		t.Fatalf("ReadFormat = %q, %q, %v (version %+v, written %+v)", got, fm, err, rv, v)
	}
	// The plaintext protection says what it found.
	_, _, err = mustNewFile(t, path, Plaintext()).Read(ctx)
	wantErrIs(t, err, ErrUnavailable) // not corrupt: DPAPI opens it
	if !strings.Contains(err.Error(), "DPAPI") {
		t.Errorf("error %q does not name DPAPI", err)
	}
	// An envelope cannot be opened by DPAPI.
	if err := os.WriteFile(path, mustSeal(t, memKeyring(newMemStore()), secretJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.Read(ctx)
	wantErrIs(t, err, ErrUnavailable) // not corrupt: a process with the keyring opens it
	if !strings.Contains(err.Error(), "envelope") {
		t.Errorf("error %q does not name the envelope", err)
	}
}

// A reader that holds the file open (without FILE_SHARE_DELETE, as os.Open
// does) makes the rename fail for a moment: Write retries.
func TestWindowsRenameRetry(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	mustWrite(t, f, []byte(`{"v":1}`))

	h, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		h.Close()
	}()
	start := time.Now()
	if _, err := f.Write(context.Background(), []byte(`{"v":2}`)); err != nil {
		t.Fatalf("Write while a reader held the file for 200ms: %v", err)
	}
	t.Logf("Write waited %v for the reader", time.Since(start).Round(time.Millisecond))
	if got, _, _ := f.Read(context.Background()); string(got) != `{"v":2}` {
		t.Fatalf("Read = %q", got)
	}

	// Held for longer than the bound: Write fails, within the bound, and
	// leaves no temp file.
	h, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = f.Write(context.Background(), []byte(`{"v":3}`))
	d := time.Since(start)
	h.Close()
	if err == nil {
		t.Fatal("Write succeeded while the file was held open")
	}
	if d > robustTimeout+time.Second {
		t.Errorf("Write gave up after %v, want about %v", d, robustTimeout)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"cache.json"}) {
		t.Errorf("directory holds %v", got)
	}
	if got, _, _ := f.Read(context.Background()); string(got) != `{"v":2}` {
		t.Fatalf("Read after the failed write = %q", got)
	}
}
