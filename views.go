package msalcache

import (
	"reflect"
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
