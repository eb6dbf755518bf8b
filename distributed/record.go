package distributed

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/seal"
)

// A record is what the store holds for a partition, before sealing:
//
//	offset  size  field
//	0       1     format version (1)
//	1       8     generation: chosen when the partition is created or removed
//	9       1     flags: 1 = removed (a tombstone, no entries)
//	10      n     the partition's MSAL cache JSON
//
// The generation lets a writer see that the partition was removed after it
// loaded it: a write based on another generation is dropped, so a sign-out
// is never undone by a merge.
type record struct {
	gen     uint64
	removed bool
	snap    *msaljson.Snapshot
}

const (
	recordVersion   = 1
	recordHeaderLen = 10
	flagRemoved     = 1
)

var errRecord = errors.New("distributed: not a partition record")

// encodeRecord returns the stored form of r at store key skey.
func encodeRecord(r record, skey string, keys *seal.Keys) []byte {
	var js []byte
	if !r.removed {
		js = r.snap.Raw
	}
	b := make([]byte, recordHeaderLen, recordHeaderLen+len(js))
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], r.gen)
	if r.removed {
		b[9] = flagRemoved
	}
	b = append(b, js...)
	if keys != nil {
		return keys.Seal(b, []byte(skey))
	}
	return b
}

// decodeRecord reads what encodeRecord wrote. Errors wrap errRecord or
// seal.ErrOpen and never include the value.
func decodeRecord(value []byte, skey string, keys *seal.Keys, memo map[string]string) (record, error) {
	b := value
	if keys != nil {
		var err error
		if b, err = keys.Open(value, []byte(skey)); err != nil {
			return record{}, err
		}
	}
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return record{}, errRecord
	}
	r := record{gen: binary.BigEndian.Uint64(b[1:]), removed: b[9]&flagRemoved != 0, snap: msaljson.Empty}
	if r.removed {
		return r, nil
	}
	s, err := msaljson.Parse(b[recordHeaderLen:], memo)
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", errRecord, err)
	}
	r.snap = s
	return r, nil
}
