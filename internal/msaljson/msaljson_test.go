package msaljson

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustSnapshot(t *testing.T, js string) *Snapshot {
	t.Helper()
	s, err := Parse([]byte(js), nil)
	if err != nil {
		t.Fatalf("Parse(%s): %v", js, err)
	}
	return s
}

func TestSnapshotEqualIgnoresOrderAndSpace(t *testing.T) {
	a := mustSnapshot(t, `{"AccessToken":{"k1":{"secret":"a","target":"x y","n":12345678901234567890},"k2":{"secret":"b"}},"Account":{}}`)
	b := mustSnapshot(t, `{ "AccessToken" : { "k2":{"secret":"b"}, "k1":{"n":12345678901234567890,"target":"x y","secret":"a"} } }`)
	if !a.Equal(b) {
		t.Error("same cache in another key order and spacing: not equal")
	}
	c := mustSnapshot(t, `{"AccessToken":{"k1":{"secret":"a","target":"x y","n":12345678901234567891},"k2":{"secret":"b"}}}`)
	if a.Equal(c) {
		t.Error("a number differing in its last digit compared equal (precision lost)")
	}
	if !Empty.Equal(mustSnapshot(t, `{"AccessToken":{},"RefreshToken":{}}`)) {
		t.Error("empty sections differ from no sections")
	}
	if !Empty.Equal(mustSnapshot(t, " \n")) {
		t.Error("an empty file is not the empty cache")
	}
}

func TestParseSnapshotRejectsNonJSON(t *testing.T) {
	for _, in := range []string{`{"AccessToken":`, `[1,2]`, `"x"`, "\x00\x01garbage"} {
		if _, err := Parse([]byte(in), nil); err == nil {
			t.Errorf("Parse(%q) = nil error", in)
		}
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
	}{{
		name:   "both add different entries",
		base:   `{}`,
		ours:   `{"AccessToken":{"a":{"s":1}}}`,
		theirs: `{"AccessToken":{"b":{"s":2}}}`,
		want:   `{"AccessToken":{"a":{"s":1},"b":{"s":2}}}`,
	}, {
		name:   "we change an entry, they add one",
		base:   `{"RefreshToken":{"r":{"s":"old"}}}`,
		ours:   `{"RefreshToken":{"r":{"s":"new"}}}`,
		theirs: `{"RefreshToken":{"r":{"s":"old"}},"AccessToken":{"t":{"s":3}}}`,
		want:   `{"AccessToken":{"t":{"s":3}},"RefreshToken":{"r":{"s":"new"}}}`,
	}, {
		name:   "they change an entry we did not touch",
		base:   `{"RefreshToken":{"r":{"s":"old"}},"AccessToken":{"a":{"s":1}}}`,
		ours:   `{"RefreshToken":{"r":{"s":"old"}},"AccessToken":{"a":{"s":1},"b":{"s":2}}}`,
		theirs: `{"RefreshToken":{"r":{"s":"theirs"}},"AccessToken":{"a":{"s":1}}}`,
		want:   `{"AccessToken":{"a":{"s":1},"b":{"s":2}},"RefreshToken":{"r":{"s":"theirs"}}}`,
	}, {
		name:   "we remove an account, they add another",
		base:   `{"Account":{"u1":{"n":1}},"AccessToken":{"t1":{"u":1}}}`,
		ours:   `{}`,
		theirs: `{"Account":{"u1":{"n":1},"u2":{"n":2}},"AccessToken":{"t1":{"u":1},"t2":{"u":2}}}`,
		want:   `{"AccessToken":{"t2":{"u":2}},"Account":{"u2":{"n":2}}}`,
	}, {
		name:   "they removed what we did not touch",
		base:   `{"Account":{"u1":{"n":1},"u2":{"n":2}}}`,
		ours:   `{"Account":{"u1":{"n":1},"u2":{"n":2},"u3":{"n":3}}}`,
		theirs: `{"Account":{"u2":{"n":2}}}`,
		want:   `{"Account":{"u2":{"n":2},"u3":{"n":3}}}`,
	}, {
		name:   "both change one entry: ours wins",
		base:   `{"AccessToken":{"a":{"s":0}}}`,
		ours:   `{"AccessToken":{"a":{"s":1}}}`,
		theirs: `{"AccessToken":{"a":{"s":2}}}`,
		want:   `{"AccessToken":{"a":{"s":1}}}`,
	}, {
		name:   "unknown sections and scalars survive",
		base:   `{}`,
		ours:   `{"AccessToken":{"a":{"s":1}}}`,
		theirs: `{"FutureSection":{"x":{"y":[1,2]}},"version":3,"note":"kept"}`,
		want:   `{"AccessToken":{"a":{"s":1}},"FutureSection":{"x":{"y":[1,2]}},"note":"kept","version":3}`,
	}, {
		name:   "unknown fields inside entries survive",
		base:   `{}`,
		ours:   `{"AccessToken":{"a":{"s":1}}}`,
		theirs: `{"Account":{"u":{"home_account_id":"h","future_field":{"deep":true}}}}`,
		want:   `{"AccessToken":{"a":{"s":1}},"Account":{"u":{"future_field":{"deep":true},"home_account_id":"h"}}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(mustSnapshot(t, tt.base), mustSnapshot(t, tt.ours), mustSnapshot(t, tt.theirs))
			if string(got.Raw) != tt.want {
				t.Errorf("merge:\n got %s\nwant %s", got.Raw, tt.want)
			}
			if !got.Equal(mustSnapshot(t, tt.want)) {
				t.Error("merged snapshot does not equal its own encoding")
			}
			if !json.Valid(got.Raw) {
				t.Errorf("merged JSON invalid: %s", got.Raw)
			}
		})
	}
}

func TestEncodeEscapesKeys(t *testing.T) {
	s := mustSnapshot(t, `{"AccessToken":{"k\"ey\\with\u0001odd":{"s":"<&>"}}}`)
	again := mustSnapshot(t, string(s.Encode()))
	if !s.Equal(again) || !strings.Contains(string(s.Encode()), `k\"ey\\with\u0001odd`) {
		t.Errorf("round trip through encode changed the cache: %s", s.Encode())
	}
}
