package main

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSealer(t *testing.T) {
	k1, k2 := randomKey(), randomKey()
	s1, err := newSealer([][]byte{k1}, purposeCookies)
	if err != nil {
		t.Fatal(err)
	}
	type v struct{ A string }
	sealed, err := s1.seal(sessionCookie, v{"home-account"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "home-account") {
		t.Fatal("sealed value shows its content")
	}
	var got v
	if err := s1.open(sessionCookie, sealed, &got); err != nil || got.A != "home-account" {
		t.Fatalf("open = %+v, %v", got, err)
	}

	// Rotation: a sealer whose first key is new opens what the old key sealed.
	rotated, err := newSealer([][]byte{k2, k1}, purposeCookies)
	if err != nil {
		t.Fatal(err)
	}
	if err := rotated.open(sessionCookie, sealed, &got); err != nil {
		t.Errorf("a rotated sealer does not open the old key's value: %v", err)
	}
	newSealed, _ := rotated.seal(sessionCookie, v{"x"})
	if err := s1.open(sessionCookie, newSealed, &got); !errors.Is(err, errUnsealed) {
		t.Errorf("the old sealer opened a value of the new key: %v", err)
	}

	other, _ := newSealer([][]byte{k2}, purposeCookies)
	records, _ := newSealer([][]byte{k1}, purposeRecords)
	raw, _ := base64.RawURLEncoding.DecodeString(sealed)
	raw[len(raw)/2] ^= 1
	flipped := base64.RawURLEncoding.EncodeToString(raw)
	for _, tc := range []struct {
		name, ad, value string
		s               *sealer
	}{
		{"tampered", sessionCookie, flipped, s1},
		{"truncated", sessionCookie, sealed[:len(sealed)-4], s1},
		{"another cookie's name", loginCookie, sealed, s1},
		{"another app's key", sessionCookie, sealed, other},
		{"another purpose", sessionCookie, sealed, records},
		{"not base64", sessionCookie, "!!!" + sealed, s1},
		{"empty", sessionCookie, "", s1},
	} {
		if err := tc.s.open(tc.ad, tc.value, &got); !errors.Is(err, errUnsealed) {
			t.Errorf("%s: open = %v, want errUnsealed", tc.name, err)
		}
	}
}

func TestParseKeys(t *testing.T) {
	good := "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
	if ks, err := parseKeys(good + ", " + strings.TrimRight(good, "=")); err != nil || len(ks) != 2 {
		t.Errorf("parseKeys(two keys) = %d keys, %v", len(ks), err)
	}
	for _, bad := range []string{"", "short", good[:20], good + ",", "not base64 at all, really not"} {
		if _, err := parseKeys(bad); err == nil {
			t.Errorf("parseKeys(%q) accepted", bad)
		}
	}
}
