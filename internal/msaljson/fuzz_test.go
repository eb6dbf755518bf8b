package msaljson

import (
	"bytes"
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// FuzzParseEncode: any input Parse accepts encodes to valid JSON that
// parses back to the same cache and encodes again to the same bytes, and a
// memo from an earlier parse changes nothing.
func FuzzParseEncode(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, ` `, `null`, `[]`, `{"AccessToken":{"k":{"secret":"s","n":1e3}}}`,
		`{"AccessToken":{"k":{"a":1,"a":2}},"AccessToken":{"j":{}}}`,
		`{"X":{},"Y":[1,{"b":2,"a":1}],"Z":"<&>","W":null,"V":-0.0}`,
		`{"k\"ey":{"\u00e9\ud800":{"x":"\ufffd"}}}`,
		"{\"a\xff\":{\"b\xfe\":\"c\xfd\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, nil)
		if err != nil {
			return
		}
		checkEncoding(t, s)
		again, err := Parse(data, s.Seen)
		if err != nil {
			t.Fatalf("Parse with its own memo: %v", err)
		}
		if !again.Equal(s) {
			t.Fatalf("Parse with a memo differs: %s, want %s", again.Encode(), s.Encode())
		}
	})
}

// FuzzMerge merges three caches built from the fuzzer's bytes over a small
// set of names, keys and values, so that sections, scalars and entries of
// the three inputs collide often (see genCaches).
func FuzzMerge(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 2, 0x10, 1, 1, 1, 0, 1, 1, 1, 0x12, 0})
	f.Add([]byte{1, 0x02, 0, 0, 2, 0x02, 0, 0, 0x02, 1, 1, 1, 0x12, 2})
	f.Add([]byte{2, 0x20, 0, 0x01, 2, 3, 1, 0x11, 3, 2, 0x21, 0x01, 3, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		docs := genCaches(data)
		var snaps [3]*Snapshot
		for i, doc := range docs {
			s, err := Parse(doc, nil)
			if err != nil {
				t.Fatalf("Parse(%s): %v", doc, err)
			}
			snaps[i] = s
		}
		checkMerge(t, snaps[0], snaps[1], snaps[2])
	})
}

// FuzzMergeJSON merges three caches given as JSON text.
func FuzzMergeJSON(f *testing.F) {
	f.Add(`{}`, `{"AccessToken":{"a":{"s":1}}}`, `{"AccessToken":{"b":{"s":2}}}`)
	f.Add(`{"RefreshToken":{"r":{"s":"old"}}}`, `{"RefreshToken":{"r":{"s":"new"}}}`, `{"RefreshToken":{"r":{"s":"theirs"}},"v":1}`)
	f.Add(`{"X":{"a":{"s":1}}}`, `{"X":{"a":{"s":1},"b":{"s":2}}}`, `{"X":5}`)
	f.Add(`{"X":5}`, `{"X":{"a":1}}`, `{"X":{"b":2},"Y":{}}`)
	f.Add(`{"Account":{"u1":{"n":1}}}`, `{}`, `{"Account":{"u1":{"n":1},"u2":{"n":2}}}`)
	f.Fuzz(func(t *testing.T, base, ours, theirs string) {
		var snaps [3]*Snapshot
		for i, doc := range []string{base, ours, theirs} {
			s, err := Parse([]byte(doc), nil)
			if err != nil {
				return
			}
			snaps[i] = s
		}
		checkMerge(t, snaps[0], snaps[1], snaps[2])
	})
}

// genCaches turns bytes into three MSAL-cache-like JSON documents. Each
// starts with a count of operations; an operation sets a scalar, an entry
// of a section, or an empty section, on a name from a set of four, so
// that a name is often a section in one document and a scalar in another.
func genCaches(data []byte) [3][]byte {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	names := []string{"AccessToken", "Account", "X", "version"}
	keys := []string{"a", "b", "c", "k\"<\u00e9>"}
	entries := []string{`{"s":1}`, `{"s":2}`, `{"s":1,"t":[3]}`, `{ "t" : [3], "s" : 1 }`}
	scalars := []string{`1`, `"v"`, `null`, `[1,{"b":2,"a":1}]`}
	var docs [3][]byte
	for i := range docs {
		top := map[string]any{}
		for n := next() % 8; n > 0; n-- {
			op := next()
			name := names[op%4]
			switch op >> 4 & 3 {
			case 1:
				top[name] = json.RawMessage(scalars[next()%4])
			case 2:
				top[name] = map[string]json.RawMessage{}
			default:
				section, ok := top[name].(map[string]json.RawMessage)
				if !ok {
					section = map[string]json.RawMessage{}
					top[name] = section
				}
				key := keys[next()%4]
				section[key] = json.RawMessage(entries[next()%4])
			}
		}
		b, err := json.Marshal(top)
		if err != nil {
			panic(err)
		}
		docs[i] = b
	}
	return docs
}

// checkEncoding checks that s encodes to valid JSON that parses back to s,
// and that encoding that again gives the same bytes.
func checkEncoding(t *testing.T, s *Snapshot) {
	t.Helper()
	enc := s.Encode()
	if !json.Valid(enc) {
		t.Fatalf("Encode gave invalid JSON: %s", enc)
	}
	back, err := Parse(enc, nil)
	if err != nil {
		t.Fatalf("Parse(Encode) = %v; encoding %s", err, enc)
	}
	if !back.Equal(s) {
		t.Fatalf("Parse(Encode(s)) differs from s:\n encoded %s\nsections %v\n scalars %v", enc, s.Sections, s.Scalars)
	}
	if again := back.Encode(); !bytes.Equal(again, enc) {
		t.Fatalf("encoding is not stable:\n first %s\nsecond %s", enc, again)
	}
}

// A cell is one merge unit of a cache: a top-level scalar (key "") or one
// entry of a section.
type cell struct{ name, key string }

// cells returns the cells of s with their canonical JSON.
func cells(s *Snapshot) map[cell]string {
	m := map[cell]string{}
	for name, v := range s.Scalars {
		m[cell{name, ""}] = v
	}
	for name, section := range s.Sections {
		for key, v := range section {
			m[cell{name, "\x00" + key}] = v
		}
	}
	return m
}

// kind says what a name is in s: "scalar", "section" (a non-empty one), or
// "" (absent: MSAL omits empty sections).
func kind(s *Snapshot, name string) string {
	if _, ok := s.Scalars[name]; ok {
		return "scalar"
	}
	if len(s.Sections[name]) > 0 {
		return "section"
	}
	return ""
}

// checkMerge checks the properties of Merge(base, ours, theirs): nothing
// panics; the result encodes stably; every cell this process changed since
// base (added, changed or removed) has our value; every other cell has
// theirs, unless the name is a section in one and a scalar in the other
// and we changed it (then our kind wins, and their cells of the other kind
// go); merging with nothing changed on one side gives the other side.
func checkMerge(t *testing.T, base, ours, theirs *Snapshot) {
	t.Helper()
	m := Merge(base, ours, theirs)
	if !bytes.Equal(m.Raw, m.Encode()) {
		t.Fatalf("Raw %s is not the encoding %s", m.Raw, m.Encode())
	}
	checkEncoding(t, m)
	for name := range m.Scalars {
		if len(m.Sections[name]) > 0 {
			t.Fatalf("%q is both a scalar and a section in the result %s", name, m.Raw)
		}
	}

	cb, co, ct, cm := cells(base), cells(ours), cells(theirs), cells(m)
	changedName := map[string]bool{} // names with a cell we changed
	all := map[cell]bool{}
	for _, c := range []map[cell]string{cb, co, ct, cm} {
		for k := range c {
			all[k] = true
		}
	}
	for c := range all {
		b, inBase := cb[c]
		o, inOurs := co[c]
		if inBase != inOurs || b != o {
			changedName[c.name] = true
		}
	}
	for _, c := range slices.SortedFunc(maps.Keys(all), func(a, b cell) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.key, b.key))
	}) {
		b, inBase := cb[c]
		o, inOurs := co[c]
		th, inTheirs := ct[c]
		got, inGot := cm[c]
		if inBase != inOurs || b != o {
			if inGot != inOurs || got != o {
				t.Fatalf("cell %q we changed (base %q, ours %q) is %q (present %v) in the merge\nbase   %s\nours   %s\ntheirs %s\nmerged %s",
					c, b, o, got, inGot, base.Raw, ours.Raw, theirs.Raw, m.Raw)
			}
			continue
		}
		if inGot == inTheirs && got == th {
			continue
		}
		// Untouched by us, yet not theirs: only a kind conflict that we
		// made may drop it.
		if !changedName[c.name] || kind(m, c.name) != kind(ours, c.name) || kind(m, c.name) == kind(theirs, c.name) {
			t.Fatalf("cell %q untouched by us (%q) is %q (present %v) in the merge, theirs %q (present %v)\nbase   %s\nours   %s\ntheirs %s\nmerged %s",
				c, b, got, inGot, th, inTheirs, base.Raw, ours.Raw, theirs.Raw, m.Raw)
		}
		if inGot {
			t.Fatalf("cell %q untouched by us is %q in the merge, in neither ours nor theirs", c, got)
		}
	}

	for _, tc := range []struct {
		what               string
		base, ours, theirs *Snapshot
		want               *Snapshot
	}{
		{"nothing changed by us: theirs", base, base, theirs, theirs},
		{"nothing changed by them: ours", theirs, ours, theirs, ours},
		{"both the same: that", base, ours, ours, ours},
		{"merged again against the result: the result", base, ours, m, m},
	} {
		if got := Merge(tc.base, tc.ours, tc.theirs); !got.Equal(tc.want) {
			t.Fatalf("%s: got %s, want %s\nbase   %s\nours   %s\ntheirs %s", tc.what, got.Raw, tc.want.Encode(), base.Raw, ours.Raw, theirs.Raw)
		}
	}
}
