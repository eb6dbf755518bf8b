package appkey

import (
	"bytes"
	"testing"
)

// TestDerive: each purpose and each app key gives its own key, and the same
// inputs give the same key (the web app's replicas and the load command
// must agree).
func TestDerive(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	seen := map[string]string{}
	for _, p := range []string{Cookies, Records, Tokens} {
		got := Derive([][]byte{k1, k2}, p)
		if len(got) != 2 || len(got[0]) != 32 || len(got[1]) != 32 {
			t.Fatalf("Derive(%q): %d keys", p, len(got))
		}
		if again := Derive([][]byte{k1}, p); !bytes.Equal(again[0], got[0]) {
			t.Errorf("Derive(%q) is not deterministic", p)
		}
		for i, k := range got {
			if prev, ok := seen[string(k)]; ok {
				t.Errorf("purpose %q key %d equals %s", p, i, prev)
			}
			seen[string(k)] = p
		}
	}
}
