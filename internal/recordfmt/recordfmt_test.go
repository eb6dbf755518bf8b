package recordfmt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/seal"
)

func TestSealOpen(t *testing.T) {
	keys, err := seal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*seal.Keys{nil, keys} {
		at := time.UnixMilli(1_796_000_000_123)
		for _, h := range []Header{{Gen: 1<<63 + 5}, {Gen: 9, Removed: true, At: at}, {Gen: 3, At: at, After: at.Add(-time.Second)}} {
			js := []byte(`{"AccessToken":{}}`)
			v := Seal(h, js, "p:a", k)
			got, gotJS, err := Open(v, "p:a", k)
			if err != nil || !sameHeader(got, h) || !bytes.Equal(gotJS, js) {
				t.Errorf("Open(Seal(%+v)) = %+v, %q, %v", h, got, gotJS, err)
			}
			if k != nil {
				if _, _, err := Open(v, "p:b", k); !errors.Is(err, seal.ErrOpen) {
					t.Errorf("opened at another store key: %v", err)
				}
			}
		}
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, append([]byte{1}, make([]byte, 30)...), append([]byte{32}, make([]byte, 30)...)} {
		if _, _, err := Open(bad, "p:a", nil); !errors.Is(err, ErrFormat) {
			t.Errorf("Open(%v): %v, want ErrFormat", bad, err)
		}
	}
}

func TestStoreKey(t *testing.T) {
	a, b := StoreKey("p:", "uid.tid"), StoreKey("q:", "uid.tid")
	if !strings.HasPrefix(a, "p:") || strings.Contains(a, "uid") || a == StoreKey("p:", "uid2.tid") {
		t.Errorf("StoreKey: %q", a)
	}
	if strings.TrimPrefix(a, "p:") == strings.TrimPrefix(b, "q:") {
		t.Error("the hash does not depend on the prefix")
	}
	if a != StoreKey("p:", "uid.tid") {
		t.Error("StoreKey is not deterministic")
	}
}

func sameHeader(a, b Header) bool {
	return a.Gen == b.Gen && a.Removed == b.Removed && a.At.Equal(b.At) && a.After.Equal(b.After)
}
