// Package msaljson reads, compares and merges MSAL token cache JSON. Both
// caches use it: the file cache (package msalcache) and the distributed cache
// (package distributed).
package msaljson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// A Snapshot is one state of the MSAL cache in a form that can be compared
// and merged: each top-level section ("AccessToken", "RefreshToken",
// "IdToken", "Account", "AppMetadata", and any section a newer MSAL adds)
// maps entry keys to the entry's canonical JSON (object keys sorted, numbers
// as written). Top-level values that are not objects are kept whole in
// scalars. MSAL Go marshals maps in random order, so the bytes of two equal
// caches differ; their snapshots do not.
//
// A Snapshot is never modified after it is built.
type Snapshot struct {
	Sections map[string]map[string]string
	Scalars  map[string]string
	Raw      []byte // the JSON the snapshot was built from, for Unmarshal
	// Seen maps each entry's JSON as it was parsed to its canonical form, so
	// that parsing the next state of the cache, which mostly repeats the
	// entries of this one, canonicalizes only what changed.
	Seen map[string]string
}

// Empty is the state of a cache that has no file.
var Empty = &Snapshot{Raw: []byte("{}")}

// Parse reads MSAL cache JSON. Empty input is an empty cache. An
// entry found in memo (the Seen map of an earlier parse) is not decoded again.
func Parse(data []byte, memo map[string]string) (*Snapshot, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Empty, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("not MSAL cache JSON: %w", err)
	}
	s := &Snapshot{Raw: data, Seen: map[string]string{}}
	for name, value := range top {
		var entries map[string]json.RawMessage
		if isObject(value) && json.Unmarshal(value, &entries) == nil {
			section := make(map[string]string, len(entries))
			for key, entry := range entries {
				c, ok := memo[string(entry)]
				if !ok {
					var err error
					if c, err = canonical(entry); err != nil {
						return nil, fmt.Errorf("not MSAL cache JSON: %s entry %q: %w", name, key, err)
					}
				}
				section[key] = c
				s.Seen[string(entry)] = c
			}
			if s.Sections == nil {
				s.Sections = map[string]map[string]string{}
			}
			s.Sections[name] = section
			continue
		}
		c, err := canonical(value)
		if err != nil {
			return nil, fmt.Errorf("not MSAL cache JSON: %s: %w", name, err)
		}
		if s.Scalars == nil {
			s.Scalars = map[string]string{}
		}
		s.Scalars[name] = c
	}
	return s, nil
}

func isObject(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '{'
}

// canonical returns v with object keys sorted and insignificant space
// removed. Numbers keep their exact text.
func canonical(v json.RawMessage) (string, error) {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return "", err
	}
	b, err := json.Marshal(x) // sorts map keys
	return string(b), err
}

// Equal reports whether a and b hold the same cache. An empty section is
// the same as a missing one (MSAL omits empty sections).
func (a *Snapshot) Equal(b *Snapshot) bool {
	if a == b {
		return true
	}
	if !maps.Equal(a.Scalars, b.Scalars) {
		return false
	}
	for _, name := range sectionNames(a, b) {
		if !maps.Equal(a.Sections[name], b.Sections[name]) {
			return false
		}
	}
	return true
}

// Merge is a three-way merge by section and entry key. base is what this
// process last synced, ours what it holds now, theirs what the file holds.
// An entry this process changed, added or removed since base wins; every
// other entry is taken from theirs, so no process loses another's tokens.
func Merge(base, ours, theirs *Snapshot) *Snapshot {
	out := &Snapshot{}
	out.Scalars = mergeEntries(base.Scalars, ours.Scalars, theirs.Scalars)
	for _, name := range sectionNames(base, ours, theirs) {
		section := mergeEntries(base.Sections[name], ours.Sections[name], theirs.Sections[name])
		if len(section) > 0 {
			if out.Sections == nil {
				out.Sections = map[string]map[string]string{}
			}
			out.Sections[name] = section
		}
	}
	// A name can be a section in one input and a scalar in another, and
	// the merges above may then keep both, which one JSON object cannot
	// hold. Only a name this process changed can end up so (one we did not
	// touch is theirs, of one kind), so our kind wins, as our changes do.
	for name := range out.Scalars {
		if _, both := out.Sections[name]; !both {
			continue
		}
		if _, ourScalar := ours.Scalars[name]; ourScalar {
			delete(out.Sections, name)
		} else {
			delete(out.Scalars, name)
		}
	}
	out.Raw = out.Encode()
	// The file now holds every entry in its canonical form.
	out.Seen = map[string]string{}
	for _, section := range out.Sections {
		for _, c := range section {
			out.Seen[c] = c
		}
	}
	return out
}

func mergeEntries(base, ours, theirs map[string]string) map[string]string {
	out := make(map[string]string, len(theirs))
	for key, value := range theirs {
		out[key] = value
	}
	changed := func(key string) {
		b, inBase := base[key]
		o, inOurs := ours[key]
		if inBase == inOurs && b == o {
			return // untouched by us: theirs stands
		}
		if inOurs {
			out[key] = o
		} else {
			delete(out, key)
		}
	}
	for key := range ours {
		changed(key)
	}
	for key := range base {
		changed(key)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func sectionNames(snaps ...*Snapshot) []string {
	var names []string
	for _, s := range snaps {
		for name := range s.Sections {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Encode writes the snapshot as MSAL cache JSON with sorted keys, which
// every MSAL reads.
func (s *Snapshot) Encode() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	field := func(name string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
	}
	names := slices.Sorted(maps.Keys(s.Sections))
	names = append(names, slices.Sorted(maps.Keys(s.Scalars))...)
	slices.Sort(names)
	names = slices.Compact(names) // never both after Parse or Merge; the scalar wins
	for _, name := range names {
		field(name)
		if v, ok := s.Scalars[name]; ok {
			b.WriteString(v)
			continue
		}
		b.WriteByte('{')
		for i, key := range slices.Sorted(maps.Keys(s.Sections[name])) {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(key)
			b.Write(k)
			b.WriteByte(':')
			b.WriteString(s.Sections[name][key])
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes()
}
