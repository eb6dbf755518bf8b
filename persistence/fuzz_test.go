package persistence

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the envelope decoder and to File's
// format detection: no panic, every failure is ErrCorrupt (ErrUnavailable
// for a file sealed by another protection), and nothing decodes to more
// bytes than it was given (there is no length field to lie).
func FuzzDecode(f *testing.F) {
	key := bytes.Repeat([]byte{7}, keySize)
	k, err := newEnvelopeKey(key)
	if err != nil {
		f.Fatal(err)
	}
	valid := k.seal([]byte(`{"AccessToken":{}}`))
	f.Add(valid)
	f.Add(k.seal(nil))
	f.Add(valid[:envelopeMinLen-1])
	f.Add([]byte("MSALCENV"))
	f.Add([]byte("MSALCENV\x02"))
	f.Add(append([]byte("MSALCENV\x01"), bytes.Repeat([]byte{0xff}, 40)...))
	f.Add([]byte(`{"a":1}`))
	f.Add(append(bytes.Clone(dpapiPrefix), 1, 2, 3))
	f.Add([]byte{})

	store := newMemStore()
	store.items[[2]string{DefaultKeyringService, DefaultKeyringAccount}] = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
	p := memKeyring(store)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnvelope(b)
		if err == nil {
			pt, err := k.open(e)
			if err == nil && len(pt) > len(b) {
				t.Fatalf("decoded %d bytes from %d", len(pt), len(b))
			}
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open: %v is not ErrCorrupt", err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("parse: %v is not ErrCorrupt", err)
		}
		f := &File{path: "fuzz", p: p}
		fm := DetectFormat(b)
		pt, err := f.decode(context.Background(), b, fm)
		switch {
		case err == nil:
		case fm == FormatDPAPI:
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode of a DPAPI blob by the envelope protection: %v is not ErrUnavailable alone", err)
			}
		case !errors.Is(err, ErrCorrupt):
			t.Fatalf("decode: %v is not ErrCorrupt", err)
		}
		if len(pt) > len(b) {
			t.Fatalf("decoded %d bytes from %d", len(pt), len(b))
		}
	})
}
