package msalcache

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unsafe"
	"weak"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// A view is what one MSAL cache object holds, as far as this Cache knows:
// the state it last got from Replace or gave to Export, and the Clear
// generation that state belongs to. It tells Replace whether Unmarshal is
// needed, and it is the base Export merges against.
type view struct {
	obj    weak.Pointer[byte] // the object, held weakly
	snap   *msaljson.Snapshot
	clears uint64
}

// views holds a view per MSAL cache object, keyed by the object's address.
// The objects are held weakly: a live object never loses its view, and the
// views of objects the garbage collector reclaimed (short-lived clients)
// are swept as the map grows, so memory stays proportional to the live
// objects.
type views struct {
	m       map[uintptr]view
	sweepAt int // sweep when the map reaches this size
}

// minSweep is the size below which views are never swept.
const minSweep = 64

// identity returns the address of x when x is a pointer to a value of
// non-zero size, as MSAL's cache objects are, and nil otherwise: a value
// (or a pointer to a zero-size value, which may share its address with
// others) has no identity to remember it by.
func identity(x any) unsafe.Pointer {
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Type().Elem().Size() == 0 {
		return nil
	}
	return v.UnsafePointer()
}

// get returns the view of the object at p, if there is one.
func (vs *views) get(p unsafe.Pointer) (view, bool) {
	if p == nil {
		return view{}, false
	}
	v, ok := vs.m[uintptr(p)]
	if !ok || unsafe.Pointer(v.obj.Value()) != p {
		return view{}, false // none, or that of a dead object whose address was reused
	}
	return v, true
}

// set records that the object at p holds snap, of Clear generation clears.
func (vs *views) set(p unsafe.Pointer, snap *msaljson.Snapshot, clears uint64) {
	if p == nil {
		return
	}
	key := uintptr(p)
	if v, ok := vs.m[key]; ok && unsafe.Pointer(v.obj.Value()) == p {
		v.snap, v.clears = snap, clears
		vs.m[key] = v
		return
	}
	if vs.m == nil {
		vs.m = map[uintptr]view{}
	}
	if len(vs.m) >= vs.sweepAt {
		for k, v := range vs.m {
			if v.obj.Value() == nil {
				delete(vs.m, k)
			}
		}
		vs.sweepAt = max(minSweep, 2*len(vs.m))
	}
	vs.m[key] = view{obj: weak.Make((*byte)(p)), snap: snap, clears: clears}
}

// fileWins is the merge base for an object this Cache has no view of: the
// entries it holds that the file holds too, so that the file wins every
// conflict and only the entries the file lacks are taken from ours.
func fileWins(ours, theirs *msaljson.Snapshot) *msaljson.Snapshot {
	base := &msaljson.Snapshot{}
	for name, value := range ours.Scalars {
		if _, ok := theirs.Scalars[name]; ok {
			if base.Scalars == nil {
				base.Scalars = map[string]string{}
			}
			base.Scalars[name] = value
		}
	}
	for name, section := range ours.Sections {
		for key, value := range section {
			if _, ok := theirs.Sections[name][key]; !ok {
				continue
			}
			if base.Sections == nil {
				base.Sections = map[string]map[string]string{}
			}
			if base.Sections[name] == nil {
				base.Sections[name] = map[string]string{}
			}
			base.Sections[name][key] = value
		}
	}
	return base
}

// unwritten describes what an Export of an object this Cache has no view
// of could not write: its entries (and top-level values) that the file
// holds with another value. Without a record of what the object held
// before, the Cache cannot tell a change the caller made from a stale
// copy, so the file's stand.
type unwritten struct {
	n         int
	perSource map[string]int // by section name; "" for top-level values
}

// differing returns what ours holds with another value than theirs.
func differing(ours, theirs *msaljson.Snapshot) unwritten {
	u := unwritten{perSource: map[string]int{}}
	for name, value := range ours.Scalars {
		if v, ok := theirs.Scalars[name]; ok && v != value {
			u.n++
			u.perSource[""]++
		}
	}
	for name, section := range ours.Sections {
		for key, value := range section {
			if v, ok := theirs.Sections[name][key]; ok && v != value {
				u.n++
				u.perSource[name]++
			}
		}
	}
	return u
}

// error is the error an Export returns for u, or nil if nothing was left
// unwritten. It names sections and counts, never keys or values.
func (u unwritten) error() error {
	if u.n == 0 {
		return nil
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(u.perSource)) {
		if name != "" {
			parts = append(parts, fmt.Sprintf("%s: %d", name, u.perSource[name]))
		}
	}
	if n := u.perSource[""]; n > 0 {
		parts = append(parts, fmt.Sprintf("top-level values: %d", n))
	}
	return fmt.Errorf("%d entries of the exported cache (%s) were not written: the file holds them with other values, and this Cache cannot tell whether the exported ones are newer or stale, because it has no record of what this cache object held before (it is not a pointer, or it was never passed to Replace or Export of this Cache); the file keeps its values, and only the entries it lacked were added. Export MSAL's cache object itself, after a Replace of this Cache, as MSAL Go does",
		u.n, strings.Join(parts, ", "))
}
