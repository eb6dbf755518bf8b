package distributed

import (
	"errors"
	"fmt"
	"time"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// A record is what the store holds for a partition, before sealing: a
// format version, the generation, flags and the partition's MSAL cache JSON
// (internal/record has the layout).
//
// The generation lets a writer see that the partition was removed after it
// loaded it: a write based on another generation is dropped, so a sign-out
// is never undone by a merge.
type record struct {
	gen     uint64
	removed bool
	at      time.Time // a tombstone's: when removed; else when the generation began
	after   time.Time // the removal the generation follows (zero: none known)
	snap    *msaljson.Snapshot
}

var errRecord = errors.New("distributed: not a partition record")

// encodeRecord returns the stored form of r at store key skey.
func encodeRecord(r record, skey string, keys *seal.Keys) []byte {
	var js []byte
	if !r.removed {
		js = r.snap.Raw
	}
	return recordfmt.Seal(recordfmt.Header{Gen: r.gen, Removed: r.removed, At: r.at, After: r.after}, js, skey, keys)
}

// decodeRecord reads what encodeRecord wrote. Errors wrap errRecord or
// seal.ErrOpen and never include the value.
func decodeRecord(value []byte, skey string, keys *seal.Keys, memo map[string]string) (record, error) {
	h, js, err := recordfmt.Open(value, skey, keys)
	if errors.Is(err, recordfmt.ErrFormat) {
		return record{}, errRecord
	}
	if err != nil {
		return record{}, err
	}
	r := record{gen: h.Gen, removed: h.Removed, at: h.At, after: h.After, snap: msaljson.Empty}
	if r.removed {
		return r, nil
	}
	s, err := msaljson.Parse(js, memo)
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", errRecord, err)
	}
	r.snap = s
	return r, nil
}
