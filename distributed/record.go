package distributed

import (
	"errors"
	"fmt"
	"sync"
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

// errRecord is a record whose MSAL cache JSON does not parse.
var errRecord = errors.New("distributed: not a partition record")

// encodeRecord returns the stored form of r at store key skey.
func encodeRecord(r record, skey string, keys *seal.Keys) []byte {
	var js []byte
	if !r.removed {
		js = r.snap.Raw
	}
	return recordfmt.Seal(recordfmt.Header{Gen: r.gen, Removed: r.removed, At: r.at, After: r.after}, js, skey, keys)
}

// decodeRecord reads what encodeRecord wrote. Errors are recordfmt.Open's
// (see unreadable) or wrap errRecord, and never include the value.
func decodeRecord(value []byte, skey string, keys *seal.Keys, memo map[string]string) (record, error) {
	h, js, err := recordfmt.Open(value, skey, keys)
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

// unreadable reports whether err (decodeRecord's) says that the stored
// value is whole but not for this Cache: sealed with a key it does not hold
// (or it has no keys), or written in a newer format by a newer release.
// Another replica can read it, so this Cache reads it as empty and never
// overwrites it with a write: that would lose the tokens it holds, or bring
// back a user whose sign-out it records. A value that is damaged (it does
// not authenticate under a key this Cache holds) or is no record at all is
// not unreadable in this sense: a write overwrites it, which is how it
// heals.
func unreadable(err error) bool {
	return errors.Is(err, recordfmt.ErrSealed) || errors.Is(err, recordfmt.ErrNewer)
}

// rejected counts a stored value of skey that this Cache could not read
// (err: decodeRecord's) and logs it: an unreadable one once per cause (a
// key id, a format version), with the remedy, since in a rolling deploy it
// concerns many partitions; a damaged one each time.
func (c *Cache) rejected(skey string, err error) {
	c.st.rejected.Add(1)
	if !unreadable(err) {
		c.log.Warn("distributed: a stored partition does not decrypt or parse; treated as empty", "key", skey, "err", err)
		return
	}
	if c.causes.first(err.Error()) {
		c.log.Warn("distributed: stored partitions that this Cache cannot read (another replica can): each is read as empty and never overwritten, and writes to it are withheld (Stats.Withheld); give every replica the same WithEncryptionKeys list and release (see the package doc on key rotation)",
			"key", skey, "err", err)
	}
}

// withhold counts a write that is not made because the stored partition
// is unreadable (err), and logs it like rejected.
// errWithheld is what Export returns for a write withheld: MSAL got its
// tokens, the store did not.
var errWithheld = errors.New("distributed: a change was not stored: the store holds the partition sealed with a key this Cache lacks, or in a newer format; give every replica the same WithEncryptionKeys list (see the package doc on key rotation)")

func (c *Cache) withhold(skey string, err error) {
	c.st.withheld.Add(1)
	c.rejected(skey, err)
}

// maxCauses bounds how many causes a Cache remembers having logged: past
// it (values sealed with many different unknown keys), each is logged.
const maxCauses = 64

// causes remembers which causes of unreadable values were logged. The
// zero value is ready; it is safe for concurrent use.
type causes struct {
	mu     sync.Mutex
	logged map[string]bool
}

// first reports whether cause is seen for the first time (and not past
// maxCauses), and records it.
func (l *causes) first(cause string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged[cause] {
		return false
	}
	if len(l.logged) >= maxCauses {
		return true
	}
	if l.logged == nil {
		l.logged = map[string]bool{}
	}
	l.logged[cause] = true
	return true
}
