package recordfmt

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/seal"
)

func testKeys(t testing.TB, b ...byte) *seal.Keys {
	t.Helper()
	raw := make([][]byte, len(b))
	for i, x := range b {
		raw[i] = bytes.Repeat([]byte{x}, 32)
	}
	k, err := seal.New(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSealedIsNeverARecordWithoutKeys: a reader with no keys reads no
// sealed blob as a record; each is ErrSealed. (With record format 1, whose
// version byte was a sealed blob's, about half of them read as tombstones.)
func TestSealedIsNeverARecordWithoutKeys(t *testing.T) {
	keys := testKeys(t, 1)
	js := []byte(`{"RefreshToken":{"k":{"home_account_id":"u.t","secret":"x"}}}`)
	var records, tombstones, sealed int
	for i := range 1000 {
		h := Header{Gen: uint64(i) + 1, Removed: i%2 == 1, At: time.UnixMilli(int64(i))}
		got, _, err := Open(Seal(h, js, "p:a", keys), "p:a", nil)
		switch {
		case err == nil && got.Removed:
			tombstones++
		case err == nil:
			records++
		case errors.Is(err, ErrSealed):
			sealed++
		}
	}
	if records+tombstones != 0 || sealed != 1000 {
		t.Errorf("of 1000 sealed blobs opened without keys: %d read as records, %d as tombstones, %d ErrSealed; want 0, 0, 1000",
			records, tombstones, sealed)
	}
}

// TestOpenSaysWhy: each value that is not read says why, with a sentinel
// that tells a writer whether it may overwrite it, and no byte of the value.
func TestOpenSaysWhy(t *testing.T) {
	k1, k2, k21 := testKeys(t, 1), testKeys(t, 2), testKeys(t, 2, 1)
	h := Header{Gen: 7, At: time.UnixMilli(1_796_000_000_000)}
	js := []byte(`{"AccessToken":{"k":{"secret":"hunter2"}}}`)
	plain := Seal(h, js, "p:a", nil)
	sealed1 := Seal(h, js, "p:a", k1)
	tampered := bytes.Clone(sealed1)
	tampered[len(tampered)-1] ^= 1
	newer := bytes.Clone(plain)
	newer[0] = version + 1
	// A newer format sealed: the record inside is newer.
	newerSealed := k1.Seal(newer, []byte("p:a"))
	cases := []struct {
		name  string
		value []byte
		keys  *seal.Keys
		want  error
	}{
		{"sealed, reader without keys", sealed1, nil, ErrSealed},
		{"sealed with a key the reader lacks", sealed1, k2, ErrSealed},
		{"sealed with the old key, reader rotated", sealed1, k21, nil},
		{"tampered under a key the reader holds", tampered, k1, seal.ErrOpen},
		{"moved to another store key", Seal(h, js, "p:b", k1), k1, seal.ErrOpen},
		{"a newer format, plain", newer, nil, ErrNewer},
		{"a newer format, plain, reader with keys", newer, k1, ErrNewer},
		{"a newer format, sealed", newerSealed, k1, ErrNewer},
		{"a newer sealed format", append([]byte{version + 1}, sealed1[1:]...), k1, ErrNewer},
		{"plain record, reader with keys", plain, k1, ErrFormat},
		{"JSON", js, nil, ErrFormat},
		{"JSON, reader with keys", js, k1, ErrFormat},
		{"empty", nil, nil, ErrFormat},
		{"truncated record", plain[:headerLen-1], nil, ErrFormat},
		{"a sealed blob's first byte, too short to be one", sealed1[:seal.Overhead-1], nil, ErrFormat},
		{"sealed empty plaintext", k1.Seal(nil, []byte("p:a")), k1, ErrFormat},
	}
	sentinels := []error{ErrSealed, ErrNewer, ErrFormat, seal.ErrOpen}
	for _, c := range cases {
		got, gotJS, err := Open(c.value, "p:a", c.keys)
		if c.want == nil {
			if err != nil || got.Gen != h.Gen || !bytes.Equal(gotJS, js) {
				t.Errorf("%s: Open = %+v, %v", c.name, got, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Open error %v, want %v", c.name, err, c.want)
			continue
		}
		for _, s := range sentinels {
			if s != c.want && errors.Is(err, s) {
				t.Errorf("%s: %v is also %v", c.name, err, s)
			}
		}
		if bytes.Contains([]byte(err.Error()), []byte("hunter2")) || got != (Header{}) || gotJS != nil {
			t.Errorf("%s: Open returned %+v, %q, %v", c.name, got, gotJS, err)
		}
	}
}

// FuzzOpen: Open never panics; with no keys it never reads a sealed blob
// (nor anything but a plain record) as a record or a tombstone; with keys
// it never reads a plain value; what it reads, Seal writes and Open reads
// back the same.
func FuzzOpen(f *testing.F) {
	keys := testKeys(f, 1)
	js := []byte(`{"AccessToken":{}}`)
	for _, h := range []Header{{Gen: 3}, {Gen: 4, Removed: true, At: time.UnixMilli(5)}} {
		f.Add(Seal(h, js, "p:a", nil), false)
		f.Add(Seal(h, nil, "p:a", nil), false)
		f.Add(Seal(h, js, "p:a", keys), false)
		f.Add(Seal(h, js, "p:a", keys), true)
	}
	f.Add([]byte{version + 1, 0}, false)
	f.Add([]byte(`{"a":1}`), true)
	f.Fuzz(func(t *testing.T, value []byte, withKeys bool) {
		k := keys
		if !withKeys {
			k = nil
		}
		h, got, err := Open(value, "p:a", k)
		if err != nil {
			if h != (Header{}) || got != nil {
				t.Fatalf("an error with a header %+v or content", h)
			}
			return
		}
		if _, sealed := seal.KeyID(value); sealed != withKeys {
			t.Fatalf("read a value (sealed %v) as a record (removed %v) with keys %v", sealed, h.Removed, withKeys)
		}
		if again, _, err := Open(Seal(h, got, "p:a", k), "p:a", k); err != nil || !sameHeader(again, h) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, h)
		}
	})
}
