package msaljson

import (
	"encoding/json"
	"maps"
	"strings"
)

// AppTokenSuffix ends the partition key of MSAL Go's app token cache (client
// credentials): <clientID>_<tenant>[_<hash>]_AppTokenCache.
const AppTokenSuffix = "_AppTokenCache"

// everyPartition is the owner of entries that every partition carries.
const everyPartition = "\x00every"

// Owners remembers the partition of each entry (by its canonical JSON), so
// that filtering the next state of a cache, which mostly repeats the entries
// of this one, decodes only what changed. The zero value is ready to use;
// it is not safe for concurrent use.
type Owners struct {
	m map[string]string
}

// Partition returns the entries of s that belong to the partition key, as
// MSAL Go v1.10 keys its partitions, computed from each entry:
//   - an entry with user_assertion_hash (on-behalf-of) belongs to that hash;
//   - else an entry with home_account_id (user tokens, accounts) belongs to
//     that home account ID;
//   - else an entry with client_id (app tokens) belongs to
//     <client_id>_<realm>[_<ext_cache_key>]_AppTokenCache;
//   - AppMetadata entries (the client's family, no user data) belong to
//     every partition.
//
// Entries that belong to no partition and top-level scalars are left out.
// A partition with no entry of its own is empty, metadata or not. o may be
// nil.
func (s *Snapshot) Partition(key string, o *Owners) *Snapshot {
	if key == "" {
		return Empty
	}
	if o == nil {
		o = &Owners{}
	}
	seen := make(map[string]string)
	out := &Snapshot{}
	own := false
	for name, section := range s.Sections {
		var kept map[string]string
		for k, c := range section {
			owner, ok := o.m[c]
			if !ok {
				owner = ownerOf(name, c)
			}
			seen[c] = owner
			own = own || owner == key
			if owner == key || owner == everyPartition {
				if kept == nil {
					kept = map[string]string{}
				}
				kept[k] = c
			}
		}
		if kept != nil {
			if out.Sections == nil {
				out.Sections = map[string]map[string]string{}
			}
			out.Sections[name] = kept
		}
	}
	o.m = seen
	if !own {
		return Empty
	}
	out.finish()
	return out
}

// ownerOf computes the partition of one entry from its fields.
func ownerOf(section, canonical string) string {
	if section == "AppMetadata" {
		return everyPartition
	}
	var e struct {
		HomeAccountID     string `json:"home_account_id"`
		ClientID          string `json:"client_id"`
		Realm             string `json:"realm"`
		UserAssertionHash string `json:"user_assertion_hash"`
		ExtCacheKey       string `json:"ext_cache_key"`
	}
	if json.Unmarshal([]byte(canonical), &e) != nil {
		return "" // not an object of fields: no partition
	}
	switch {
	case e.UserAssertionHash != "":
		return e.UserAssertionHash
	case e.HomeAccountID != "":
		return e.HomeAccountID
	case e.ClientID != "":
		k := e.ClientID + "_" + e.Realm
		if e.ExtCacheKey != "" {
			k += "_" + e.ExtCacheKey
		}
		return k + AppTokenSuffix
	}
	return ""
}

// IsAppPartition reports whether key is the partition of app tokens (client
// credentials), whose lifetime is that of its tokens.
func IsAppPartition(key string) bool { return strings.HasSuffix(key, AppTokenSuffix) }

// Union returns every entry of the given snapshots, which are partitions of
// one cache (an entry key found in two of them has the same value; if not,
// the later one wins).
func Union(snaps ...*Snapshot) *Snapshot {
	out := &Snapshot{}
	for _, s := range snaps {
		for name, section := range s.Sections {
			if out.Sections == nil {
				out.Sections = map[string]map[string]string{}
			}
			dst := out.Sections[name]
			if dst == nil {
				dst = make(map[string]string, len(section))
				out.Sections[name] = dst
			}
			maps.Copy(dst, section)
		}
	}
	if out.Sections == nil {
		return Empty
	}
	out.finish()
	return out
}

// finish sets Raw and Seen for a snapshot built from canonical entries.
func (s *Snapshot) finish() {
	s.Raw = s.Encode()
	s.Seen = map[string]string{}
	for _, section := range s.Sections {
		for _, c := range section {
			s.Seen[c] = c
		}
	}
}
