package msalcache

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// unmarshal loads s into u. When u rejects s, it finds what u rejects, entry
// by entry, and loads the rest: one entry MSAL cannot read (written by a
// newer or buggy library, or damaged) costs that entry, not every account in
// the file. It returns the snapshot u holds now: s itself, or a new one
// without the rejected entries, which the caller must copy aside before the
// file is next written (the rejected entries stay in that copy).
//
// Nothing u says about what it rejects is logged or returned: MSAL's
// messages quote the offending value, which can be a token.
func unmarshal(u cache.Unmarshaler, s *msaljson.Snapshot) (held *msaljson.Snapshot, dropped map[string]int, err error) {
	if u.Unmarshal(s.Raw) == nil {
		return s, nil, nil
	}
	held, dropped = accepted(u, s)
	if u.Unmarshal(held.Raw) == nil {
		return held, dropped, nil
	}
	// Entries u takes one by one but not together: load nothing.
	dropped = map[string]int{}
	for name, section := range s.Sections {
		dropped[name] += len(section)
	}
	for name := range s.Scalars {
		dropped[name]++
	}
	if u.Unmarshal(msaljson.Empty.Raw) != nil {
		return nil, nil, errors.New("MSAL rejected an empty cache")
	}
	return msaljson.Empty, dropped, nil
}

// accepted returns the part of s that u accepts, trying each section whole
// and then, in a section u rejects, each entry alone; and how many entries
// per section it left out. u's state afterwards is unspecified.
func accepted(u cache.Unmarshaler, s *msaljson.Snapshot) (*msaljson.Snapshot, map[string]int) {
	good := &msaljson.Snapshot{Seen: s.Seen}
	dropped := map[string]int{}
	takes := func(try *msaljson.Snapshot) bool { return u.Unmarshal(try.Encode()) == nil }
	for _, name := range slices.Sorted(maps.Keys(s.Scalars)) {
		if takes(&msaljson.Snapshot{Scalars: map[string]string{name: s.Scalars[name]}}) {
			if good.Scalars == nil {
				good.Scalars = map[string]string{}
			}
			good.Scalars[name] = s.Scalars[name]
		} else {
			dropped[name]++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Sections)) {
		section := s.Sections[name]
		if !takes(&msaljson.Snapshot{Sections: map[string]map[string]string{name: section}}) {
			kept := map[string]string{}
			for key, entry := range section {
				if takes(&msaljson.Snapshot{Sections: map[string]map[string]string{name: {key: entry}}}) {
					kept[key] = entry
				} else {
					dropped[name]++
				}
			}
			section = kept
		}
		if len(section) > 0 {
			if good.Sections == nil {
				good.Sections = map[string]map[string]string{}
			}
			good.Sections[name] = section
		}
	}
	good.Raw = good.Encode()
	return good, dropped
}

// describeDropped says how many entries of which section were left out,
// naming no entry: entry keys are built from account identifiers.
func describeDropped(dropped map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(dropped)) {
		parts = append(parts, fmt.Sprintf("%s: %d", name, dropped[name]))
	}
	return strings.Join(parts, ", ")
}
