// Package recordfmt is the distributed cache's stored form of a partition: the
// name the store holds it under and its sealed record. Package distributed
// writes and reads it; distributed/loadtest reads it from Redis directly to
// check what a run left, so both compute it here.
package recordfmt

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/msalcache/msalcache/internal/seal"
)

// StoreKey is the store's name for the partition key under prefix: the
// prefix and a hash, so that no user or tenant identifier is stored in
// clear.
func StoreKey(prefix, key string) string {
	sum := sha256.Sum256([]byte(prefix + "\x00" + key))
	return prefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// MarkerKey is the store key of the marker a Cache keeps under prefix to
// tell whether the store lost its data (see distributed's package doc). It
// is no partition's key: those are 43 characters after the prefix.
func MarkerKey(prefix string) string { return prefix + "store-marker" }

// A record is, before sealing:
//
//	offset  size  field
//	0       1     format version (2)
//	1       8     generation: chosen when the partition is created or removed
//	9       1     flags: 1 = removed (a tombstone, no entries)
//	10      8     at: Unix milliseconds; a tombstone's: when the partition
//	              was removed; a live partition's: when its generation began
//	18      8     after: Unix milliseconds; a live partition's: the removal
//	              its generation follows (0: none known)
//	26      n     the partition's MSAL cache JSON
//
// The format version is never 1: a sealed blob (package seal) begins with
// 1, so a reader can tell a plain record from a sealed one. A later format
// takes the next number below 32 (maxVersion), for records and sealed blobs
// alike, so that a reader tells a value of a newer format (which a newer
// reader wrote, and which must not be overwritten) from a value that is no
// record at all (text, for instance, begins with 32 or more).
const (
	version     = 2
	maxVersion  = 31
	headerLen   = 26
	flagRemoved = 1
)

// The errors of Open. Each says why a value is not read, so that a writer
// can tell a value it may overwrite (ErrFormat, seal.ErrOpen: damaged, or
// not a record) from one it must leave to a reader that can read it
// (ErrSealed, ErrNewer).
var (
	// ErrFormat means that a value opened (or needs no opening) but is not
	// a record of this format: garbage, truncated, or a plain record where
	// the reader expects sealed ones.
	ErrFormat = errors.New("not a partition record")
	// ErrSealed means that the value is sealed with a key the reader does
	// not hold: it has no keys, or not that key id. A reader with that key
	// can read it.
	ErrSealed = errors.New("sealed with a key this reader does not hold")
	// ErrNewer means that the value is of a newer format version than the
	// reader knows: a newer release wrote it.
	ErrNewer = errors.New("a newer record format than this reader knows")
)

// A Header is a record's fields before its MSAL cache JSON.
type Header struct {
	// Gen is chosen when the partition is created or removed.
	Gen uint64
	// Removed marks a tombstone: the partition was removed, JSON is empty.
	Removed bool
	// At is, for a tombstone, when the partition was removed; for a live
	// partition, when its generation began. Stored to the millisecond.
	At time.Time
	// After is, for a live partition, the removal its generation follows
	// (zero: none known). Stored to the millisecond.
	After time.Time
}

// Seal returns the stored form of the record h, js at the store key skey:
// sealed with keys and skey as associated data, or plain when keys is nil.
func Seal(h Header, js []byte, skey string, keys *seal.Keys) []byte {
	b := make([]byte, headerLen, headerLen+len(js))
	b[0] = version
	binary.BigEndian.PutUint64(b[1:], h.Gen)
	if h.Removed {
		b[9] = flagRemoved
	}
	binary.BigEndian.PutUint64(b[10:], uint64(unixMilli(h.At)))
	binary.BigEndian.PutUint64(b[18:], uint64(unixMilli(h.After)))
	b = append(b, js...)
	if keys != nil {
		return keys.Seal(b, []byte(skey))
	}
	return b
}

// Open reads what Seal wrote: the header and the MSAL cache JSON. An error
// wraps ErrSealed, ErrNewer, ErrFormat or seal.ErrOpen (sealed with a key
// the reader holds, but tampered, truncated or moved to another store key),
// and never includes the value. With no keys, a sealed blob is ErrSealed,
// never read as a record.
func Open(value []byte, skey string, keys *seal.Keys) (Header, []byte, error) {
	b := value
	if id, sealed := seal.KeyID(value); sealed {
		if keys == nil {
			return Header{}, nil, fmt.Errorf("%w: key id %x, and no keys are configured", ErrSealed, id)
		}
		var err error
		b, err = keys.Open(value, []byte(skey))
		if errors.Is(err, seal.ErrUnknownKey) {
			return Header{}, nil, fmt.Errorf("%w: key id %x is not among the configured keys", ErrSealed, id)
		}
		if err != nil {
			return Header{}, nil, err
		}
	} else if keys != nil && len(value) > 0 && value[0] == version {
		// Not trusted: anyone who can write to the store can write it.
		return Header{}, nil, fmt.Errorf("%w: a plain record where sealed ones are expected", ErrFormat)
	}
	switch {
	case len(b) == 0:
		return Header{}, nil, fmt.Errorf("%w: empty", ErrFormat)
	case b[0] > version && b[0] <= maxVersion:
		return Header{}, nil, fmt.Errorf("%w: version %d (this reader knows %d)", ErrNewer, b[0], version)
	case b[0] != version:
		return Header{}, nil, fmt.Errorf("%w: unknown format", ErrFormat)
	case len(b) < headerLen:
		return Header{}, nil, fmt.Errorf("%w: %d bytes is too short", ErrFormat, len(b))
	}
	h := Header{
		Gen:     binary.BigEndian.Uint64(b[1:]),
		Removed: b[9]&flagRemoved != 0,
		At:      fromMilli(int64(binary.BigEndian.Uint64(b[10:]))),
		After:   fromMilli(int64(binary.BigEndian.Uint64(b[18:]))),
	}
	return h, b[headerLen:], nil
}

// unixMilli is t in Unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMilli is the inverse of unixMilli.
func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
