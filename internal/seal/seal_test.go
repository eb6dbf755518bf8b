package seal

import (
	"bytes"
	"errors"
	"testing"
)

func keyOf(b byte) []byte { return bytes.Repeat([]byte{b}, keySize) }

func TestSealOpen(t *testing.T) {
	k, err := New(keyOf(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range [][]byte{nil, []byte("{}"), bytes.Repeat([]byte("token"), 1000)} {
		blob := k.Seal(pt, []byte("msalcache:abc"))
		if len(blob) != len(pt)+Overhead {
			t.Errorf("sealed %d bytes into %d, want %d", len(pt), len(blob), len(pt)+Overhead)
		}
		if len(pt) > 8 && bytes.Contains(blob, pt[:8]) {
			t.Error("plaintext visible in the sealed blob")
		}
		got, err := k.Open(blob, []byte("msalcache:abc"))
		if err != nil || !bytes.Equal(got, pt) || got == nil {
			t.Errorf("Open = %q, %v; want %q", got, err, pt)
		}
	}
	if bytes.Equal(k.Seal([]byte("x"), nil), k.Seal([]byte("x"), nil)) {
		t.Error("two seals of one plaintext are equal: nonce reused")
	}
}

func TestOpenRejects(t *testing.T) {
	k, _ := New(keyOf(1))
	other, _ := New(keyOf(2))
	blob := k.Seal([]byte("secret"), []byte("key-a"))
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 1
		return b
	}
	cases := map[string]struct {
		keys     *Keys
		blob, ad []byte
	}{
		"moved to another store key": {k, blob, []byte("key-b")},
		"no additional data":         {k, blob, nil},
		"unknown key":                {other, blob, []byte("key-a")},
		"version byte changed":       {k, flip(0), []byte("key-a")},
		"key id changed":             {k, flip(1), []byte("key-a")},
		"nonce changed":              {k, flip(headerLen), []byte("key-a")},
		"ciphertext changed":         {k, flip(len(blob) - 1), []byte("key-a")},
		"truncated":                  {k, blob[:Overhead-1], []byte("key-a")},
		"empty":                      {k, nil, []byte("key-a")},
	}
	for name, c := range cases {
		if pt, err := c.keys.Open(c.blob, c.ad); !errors.Is(err, ErrOpen) || pt != nil {
			t.Errorf("%s: Open = %q, %v; want ErrOpen", name, pt, err)
		}
	}
}

func TestRotation(t *testing.T) {
	old, _ := New(keyOf(1))
	blob := old.Seal([]byte("tokens"), []byte("k"))
	rotated, err := New(keyOf(2), keyOf(1))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(blob, []byte("k")); err != nil || string(got) != "tokens" {
		t.Fatalf("the second key does not open an old blob: %q, %v", got, err)
	}
	fresh := rotated.Seal([]byte("tokens"), []byte("k"))
	if _, err := old.Open(fresh, []byte("k")); !errors.Is(err, ErrOpen) {
		t.Error("a new blob is sealed with the old key, not the first one")
	}
}

func TestNewRejects(t *testing.T) {
	for name, keys := range map[string][][]byte{
		"none":      nil,
		"short":     {keyOf(1)[:16]},
		"long":      {append(keyOf(1), 0)},
		"duplicate": {keyOf(1), keyOf(2), keyOf(1)},
	} {
		if _, err := New(keys...); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := New(keyOf(1))
	f.Add(k.Seal([]byte("{}"), []byte("a")), []byte("a"))
	f.Add([]byte{1, 2, 3}, []byte(nil))
	f.Fuzz(func(t *testing.T, blob, ad []byte) {
		pt, err := k.Open(blob, ad)
		if err == nil && !bytes.Equal(k.Seal(pt, ad)[:headerLen], blob[:headerLen]) {
			t.Error("opened a blob with another header")
		}
	})
}

// TestSealedWithFirst: a blob names the key that sealed it; after a
// rotation only the new key's blobs are current.
func TestSealedWithFirst(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	before, err := New(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	after, err := New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	old := before.Seal([]byte("x"), []byte("k"))
	if !before.SealedWithFirst(old) || after.SealedWithFirst(old) {
		t.Error("a blob sealed with the old key: wrong answer before or after the rotation")
	}
	if !after.SealedWithFirst(after.Seal([]byte("x"), []byte("k"))) {
		t.Error("a blob sealed after the rotation is not current")
	}
	for _, b := range [][]byte{nil, {1}, {2, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if after.SealedWithFirst(b) {
			t.Errorf("%x is current", b)
		}
	}
}

// TestUnknownKey: a blob sealed with a key that is not configured says so
// (ErrUnknownKey, wrapped with ErrOpen), unlike a damaged one; KeyID names
// the key of a blob of the sealed form without opening it.
func TestUnknownKey(t *testing.T) {
	k, _ := New(keyOf(1))
	other, _ := New(keyOf(2))
	blob := k.Seal([]byte("x"), []byte("a"))
	if _, err := other.Open(blob, []byte("a")); !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrOpen) {
		t.Errorf("another key: %v, want ErrUnknownKey and ErrOpen", err)
	}
	damaged := bytes.Clone(blob)
	damaged[len(damaged)-1] ^= 1
	if _, err := k.Open(damaged, []byte("a")); errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrOpen) {
		t.Errorf("damaged: %v, want ErrOpen only", err)
	}
	id, ok := KeyID(blob)
	if !ok || id != k.keys[0].id {
		t.Errorf("KeyID = %x, %v; want %x", id, ok, k.keys[0].id)
	}
	for _, b := range [][]byte{nil, blob[:Overhead-1], append([]byte{2}, blob[1:]...)} {
		if _, ok := KeyID(b); ok {
			t.Errorf("KeyID(%x) reports a sealed blob", b)
		}
	}
}
