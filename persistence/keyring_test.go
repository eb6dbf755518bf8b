package persistence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the envelope protector over an in-memory keyring on every
// OS; keyring_linux_test.go runs it against a real gnome-keyring.

var secretJSON = []byte(`{"RefreshToken":{"k":{"secret":"a-very-secret-refresh-token"}}}`)

func TestKeyringRoundTrip(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	for _, pt := range [][]byte{{}, []byte("{}"), secretJSON, bytes.Repeat(secretJSON, 1000)} {
		sealed := mustSeal(t, p, pt)
		if DetectFormat(sealed) != FormatEnvelope {
			t.Fatalf("sealed bytes are not detected as an envelope: %q", sealed[:min(len(sealed), 16)])
		}
		if len(sealed) != envelopeMinLen+len(pt) {
			t.Errorf("sealed %d bytes into %d, want %d", len(pt), len(sealed), envelopeMinLen+len(pt))
		}
		if len(pt) > 0 && bytes.Contains(sealed, []byte("secret")) {
			t.Fatal("the sealed bytes contain the plaintext")
		}
		got, err := p.Open(context.Background(), sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, want %q", got, pt)
		}
	}
	// Two seals of the same plaintext differ (fresh nonce).
	if bytes.Equal(mustSeal(t, p, secretJSON), mustSeal(t, p, secretJSON)) {
		t.Error("two seals of the same plaintext are equal")
	}
}

func TestKeyringKeyItem(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check on an empty keyring: %v", err)
	}
	if n := len(store.keys()); n != 0 {
		t.Fatalf("Check created %d keyring items; it must create none", n)
	}
	if _, err := p.Open(context.Background(), mustSeal(t, memKeyring(newMemStore()), secretJSON)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with no key in the keyring = %v, want ErrCorrupt", err)
	}
	if n := len(store.keys()); n != 0 {
		t.Fatalf("Open created %d keyring items; it must create none", n)
	}
	sealed := mustSeal(t, p, secretJSON)
	if got, want := store.keys(), [][2]string{{DefaultKeyringService, DefaultKeyringAccount}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keyring items = %v, want %v", got, want)
	}
	s, _ := store.get(DefaultKeyringService, DefaultKeyringAccount)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 32 {
		t.Fatalf("keyring item holds %d bytes (err %v), want the base64 of 32", len(raw), err)
	}
	sum := sha256.Sum256(raw)
	e, err := parseEnvelope(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.keyID[:], sum[:8]) {
		t.Errorf("key id %x, want the first 8 bytes of SHA-256(key) %x", e.keyID, sum[:8])
	}
	if !bytes.Equal(sealed[:9], []byte("MSALCENV\x01")) {
		t.Errorf("header starts %q, want magic and version 1", sealed[:9])
	}
}

func TestKeyringItemNames(t *testing.T) {
	store := newMemStore()
	p := newKeyring("keychain", "my-app", "tokens", store, nil)
	if p.Name() != "keychain" {
		t.Errorf("Name = %q", p.Name())
	}
	mustSeal(t, p, secretJSON)
	if got := fmt.Sprint(store.keys()); got != "[[my-app tokens]]" {
		t.Errorf("keyring items = %s, want [[my-app tokens]]", got)
	}
}

func TestKeyringFetchesKeyOnce(t *testing.T) {
	store := newMemStore()
	sealed := mustSeal(t, memKeyring(store), secretJSON)
	store.gets.Store(0)
	store.sets.Store(0)

	p := memKeyring(store)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := p.Check(ctx); err != nil {
					t.Error(err)
					return
				}
				if _, err := p.Open(ctx, sealed); err != nil {
					t.Error(err)
					return
				}
				if _, err := p.Seal(ctx, secretJSON); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := store.gets.Load(); n != 1 {
		t.Errorf("the key was fetched from the keyring %d times, want once", n)
	}
	if n := store.sets.Load(); n != 0 {
		t.Errorf("the keyring was written %d times, want 0", n)
	}
}

func TestKeyringCreatesKeyOnce(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Seal(context.Background(), secretJSON); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := store.sets.Load(); n != 1 {
		t.Errorf("%d keys were stored, want 1", n)
	}
	// Fetch (none), fetch again under the creation lock (none), store, read
	// back: three gets.
	if n := store.gets.Load(); n != 3 {
		t.Errorf("%d keyring reads, want 3 (the miss, the miss under the lock and the read-back)", n)
	}
}

func TestKeyringWrongKey(t *testing.T) {
	other := mustSeal(t, memKeyring(newMemStore()), secretJSON)
	store := newMemStore()
	p := memKeyring(store)
	mustSeal(t, p, []byte("{}")) // create and cache our key
	before := store.gets.Load()
	_, err := p.Open(context.Background(), other)
	wantErrIs(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "another key") {
		t.Errorf("error %q does not say the key differs", err)
	}
	if n := store.gets.Load() - before; n != 1 {
		t.Errorf("on a key mismatch the key was fetched %d times, want exactly once", n)
	}
}

func TestKeyringKeyCreatedByAnotherProcess(t *testing.T) {
	store := newMemStore()
	p1 := memKeyring(store)
	mustSeal(t, p1, []byte("{}")) // p1 caches key 1
	// Another process finds the key deleted and creates a new one.
	if err := store.Delete(DefaultKeyringService, DefaultKeyringAccount); err != nil {
		t.Fatal(err)
	}
	sealed := mustSeal(t, memKeyring(store), secretJSON)
	got, err := p1.Open(context.Background(), sealed)
	if err != nil {
		t.Fatalf("Open of a file sealed with a newer key: %v", err)
	}
	if !bytes.Equal(got, secretJSON) {
		t.Fatal("wrong plaintext")
	}
}

func TestKeyringDeletedKey(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	sealed := mustSeal(t, p, secretJSON)
	if err := store.Delete(DefaultKeyringService, DefaultKeyringAccount); err != nil {
		t.Fatal(err)
	}
	// A new process: the key is gone, the file cannot be decrypted.
	_, err := memKeyring(store).Open(context.Background(), sealed)
	wantErrIs(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "not in the keyring") {
		t.Errorf("error %q does not say the key is missing", err)
	}
	// The process that still holds the key in memory reads its own file, and
	// finding the keyring empty on a mismatch makes it create a new key that is
	// in the keyring for the next Seal.
	if _, err := p.Open(context.Background(), sealed); err != nil {
		t.Fatalf("Open with the cached key: %v", err)
	}
	_, err = p.Open(context.Background(), mustSeal(t, memKeyring(newMemStore()), secretJSON))
	wantErrIs(t, err, ErrCorrupt)
	sealed2 := mustSeal(t, p, secretJSON)
	if _, err := memKeyring(store).Open(context.Background(), sealed2); err != nil {
		t.Fatalf("a new key was not stored in the keyring: %v", err)
	}
}

func TestKeyringTamper(t *testing.T) {
	p := memKeyring(newMemStore())
	sealed := mustSeal(t, p, []byte(`{"a":"b"}`))
	parts := func(i int) string {
		switch {
		case i < 8:
			return "magic"
		case i == 8:
			return "version"
		case i < envelopeHeaderLen:
			return "key id"
		case i < envelopeHeaderLen+nonceSize:
			return "nonce"
		case i < len(sealed)-tagSize:
			return "ciphertext"
		}
		return "tag"
	}
	for i := range sealed {
		for bit := range 8 {
			b := bytes.Clone(sealed)
			b[i] ^= 1 << bit
			if _, err := p.Open(context.Background(), b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flipping bit %d of byte %d (%s): Open = %v, want ErrCorrupt", bit, i, parts(i), err)
			}
		}
	}
}

func TestKeyringTruncated(t *testing.T) {
	p := memKeyring(newMemStore())
	sealed := mustSeal(t, p, []byte(`{"a":"b"}`))
	for n := range len(sealed) {
		if _, err := p.Open(context.Background(), sealed[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: Open = %v, want ErrCorrupt", n, err)
		}
	}
	// Trailing bytes are tampering too.
	if _, err := p.Open(context.Background(), append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("with a byte appended: Open = %v, want ErrCorrupt", err)
	}
}

func TestKeyringNewerVersion(t *testing.T) {
	p := memKeyring(newMemStore())
	sealed := mustSeal(t, p, secretJSON)
	sealed[8] = 2
	_, err := p.Open(context.Background(), sealed)
	wantErrIs(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "version 2") {
		t.Errorf("error %q does not name the version", err)
	}
}

func TestKeyringUnavailable(t *testing.T) {
	store := newMemStore()
	store.err = errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'")
	p := memKeyring(store)
	ctx := context.Background()
	sealed := mustSeal(t, memKeyring(newMemStore()), secretJSON)
	for name, err := range map[string]error{
		"Check": p.Check(ctx),
		"Seal":  func() error { _, err := p.Seal(ctx, secretJSON); return err }(),
		"Open":  func() error { _, err := p.Open(ctx, sealed); return err }(),
		"Probe": p.Probe(ctx),
	} {
		wantErrIs(t, err, ErrUnavailable)
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: a locked keyring must not look like a corrupt file: %v", name, err)
		}
		if !strings.Contains(err.Error(), "unlock") {
			t.Errorf("%s: error %q does not tell what to do", name, err)
		}
		if strings.Contains(err.Error(), "msalcache.") || strings.Contains(err.Error(), "With") {
			t.Errorf("%s: error %q names an msalcache option; persistence users have none", name, err)
		}
	}
}

func TestKeyringPreflight(t *testing.T) {
	store := newMemStore()
	p := newKeyring("secret-service", "", "", store, func() error { return errors.New("no D-Bus session bus") })
	err := p.Check(context.Background())
	wantErrIs(t, err, ErrUnavailable)
	if !strings.Contains(err.Error(), "no D-Bus session bus") {
		t.Errorf("error %q", err)
	}
	if n := store.entered.Load(); n != 0 {
		t.Errorf("the keyring was called %d times after the preflight failed", n)
	}
}

func TestKeyringMalformedKey(t *testing.T) {
	for _, s := range []string{"not base64!", base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		store := newMemStore()
		store.items[[2]string{DefaultKeyringService, DefaultKeyringAccount}] = s
		p := memKeyring(store)
		err := p.Check(context.Background())
		wantErrIs(t, err, ErrUnavailable)
		if _, err := p.Seal(context.Background(), secretJSON); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Seal with a malformed key = %v, want ErrUnavailable", err)
		}
		if got, _ := store.get(DefaultKeyringService, DefaultKeyringAccount); got != s {
			t.Error("a malformed key item was overwritten")
		}
	}
}

func TestKeyringTimeout(t *testing.T) {
	store := newMemStore()
	store.block = make(chan struct{})
	defer close(store.block)
	p := memKeyring(store)
	p.timeout = 100 * time.Millisecond

	start := time.Now()
	err := p.Check(context.Background()) // no deadline: the default bound applies
	wantErrIs(t, err, ErrUnavailable)
	wantErrIs(t, err, context.DeadlineExceeded)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Check returned after %v, want about %v", d, p.timeout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = p.Seal(ctx, secretJSON)
	wantErrIs(t, err, ErrUnavailable)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Seal returned after %v, want about 50ms", d)
	}
	// The first call still hangs: no second one was started.
	if n := store.entered.Load(); n != 1 {
		t.Errorf("%d keyring calls started while the first hangs, want 1", n)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	err = p.Probe(cctx)
	wantErrIs(t, err, context.Canceled)
	wantErrIs(t, err, ErrUnavailable)
}

func TestKeyringProbe(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	if err := p.Probe(context.Background()); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if n := len(store.keys()); n != 0 {
		t.Errorf("Probe left %d keyring items: %v", n, store.keys())
	}
	if store.sets.Load() != 1 || store.deletes.Load() != 1 {
		t.Errorf("Probe: %d sets, %d deletes; want 1 and 1", store.sets.Load(), store.deletes.Load())
	}
	// The probe uses its own item, never the key's.
	mustSeal(t, p, secretJSON)
	key, _ := store.get(DefaultKeyringService, DefaultKeyringAccount)
	if err := p.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.get(DefaultKeyringService, DefaultKeyringAccount); got != key {
		t.Error("Probe changed the key item")
	}
	if _, ok := store.get(DefaultKeyringService, DefaultKeyringAccount+".probe"); ok {
		t.Error("the probe item is left behind")
	}
}

// lyingStore returns another value than was stored.
type lyingStore struct{ *memStore }

func (l lyingStore) Get(service, account string) (string, error) {
	s, err := l.memStore.Get(service, account)
	return s + "x", err
}

func TestKeyringProbeMismatch(t *testing.T) {
	store := newMemStore()
	err := memKeyring(lyingStore{store}).Probe(context.Background())
	wantErrIs(t, err, ErrUnavailable)
	if n := len(store.keys()); n != 0 {
		t.Errorf("a failed Probe left %d items", n)
	}
}

func TestKeyringErrorsHoldNoSecrets(t *testing.T) {
	store := newMemStore()
	p := memKeyring(store)
	sealed := mustSeal(t, p, secretJSON)
	key, _ := store.get(DefaultKeyringService, DefaultKeyringAccount)
	raw, _ := base64.StdEncoding.DecodeString(key)
	var errs []error
	for i := range sealed {
		b := bytes.Clone(sealed)
		b[i] ^= 0x55
		_, err := p.Open(context.Background(), b)
		errs = append(errs, err)
	}
	_, err := memKeyring(newMemStore()).Open(context.Background(), sealed)
	errs = append(errs, err)
	for _, err := range errs {
		msg := err.Error()
		if strings.Contains(msg, key) || strings.Contains(msg, fmt.Sprintf("%x", raw)) || strings.Contains(msg, "a-very-secret") {
			t.Fatalf("error message holds key material or plaintext: %q", msg)
		}
	}
}
