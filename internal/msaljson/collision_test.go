package msaljson

import "testing"

// TestMergeSectionScalarCollision: a top-level name that is an object (a
// section) in one input and a scalar in another. The merge must keep the
// value of whoever changed that name, as for any entry: a section this
// process added or changed must not be dropped because the file holds a
// scalar of the same name, and a name this process did not touch keeps the
// file's value.
func TestMergeSectionScalarCollision(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
	}{{
		name:   "we add a section, they add a scalar",
		base:   `{}`,
		ours:   `{"X":{"a":{"s":1}}}`,
		theirs: `{"X":5}`,
		want:   `{"X":{"a":{"s":1}}}`,
	}, {
		name:   "we add an entry, they turn the section into a scalar",
		base:   `{"X":{"a":{"s":1}}}`,
		ours:   `{"X":{"a":{"s":1},"b":{"s":2}}}`,
		theirs: `{"X":5}`,
		want:   `{"X":{"b":{"s":2}}}`,
	}, {
		name:   "we add a scalar, they add a section",
		base:   `{}`,
		ours:   `{"X":5}`,
		theirs: `{"X":{"a":{"s":1}}}`,
		want:   `{"X":5}`,
	}, {
		name:   "we turn the section into a scalar, they add an entry",
		base:   `{"X":{"a":{"s":1}}}`,
		ours:   `{"X":5}`,
		theirs: `{"X":{"a":{"s":1},"b":{"s":2}}}`,
		want:   `{"X":5}`,
	}, {
		name:   "untouched by us: their scalar stands",
		base:   `{"X":{"a":{"s":1}}}`,
		ours:   `{"X":{"a":{"s":1}}}`,
		theirs: `{"X":5}`,
		want:   `{"X":5}`,
	}, {
		name:   "untouched by us: their section stands",
		base:   `{"X":5}`,
		ours:   `{"X":5}`,
		theirs: `{"X":{"a":{"s":1}}}`,
		want:   `{"X":{"a":{"s":1}}}`,
	}, {
		name:   "we turn a scalar into a section, they add an entry to it too",
		base:   `{"X":5}`,
		ours:   `{"X":{"a":{"s":1}}}`,
		theirs: `{"X":{"b":{"s":2}}}`,
		want:   `{"X":{"a":{"s":1},"b":{"s":2}}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(mustSnapshot(t, tt.base), mustSnapshot(t, tt.ours), mustSnapshot(t, tt.theirs))
			if string(got.Raw) != tt.want {
				t.Errorf("merge:\n got %s\nwant %s", got.Raw, tt.want)
			}
			if !got.Equal(mustSnapshot(t, string(got.Raw))) {
				t.Errorf("merged snapshot (sections %v, scalars %v) does not equal its own encoding %s", got.Sections, got.Scalars, got.Raw)
			}
		})
	}
}
