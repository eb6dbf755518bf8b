package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://u:s3cret@h:1/0", "redis://u:xxxxx@h:1/0"},
		{"redis://:s3cret@h:1", "redis://:xxxxx@h:1"},
		{"postgres://app:p@ss:w@rd@h:5432/db", "postgres://app:xxxxx@h:5432/db"},
		{"redis://u@h:1", "redis://u@h:1"},
		{"redis://h:1", "redis://h:1"},
		{"not a url: secret", "not a url: secret"},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
