package msaljson

import (
	"slices"
	"strings"
	"testing"
)

// twoUsersAndAnApp is MSAL Go's cache JSON (field names as in its storage
// package) holding two users, an app token, an on-behalf-of token and the
// app's metadata.
const twoUsersAndAnApp = `{
 "AccessToken": {
  "u1-at": {"home_account_id":"uid1.tid","environment":"login","credential_type":"AccessToken","client_id":"app","realm":"tid","secret":"s1","target":"read"},
  "u2-at": {"home_account_id":"uid2.tid","environment":"login","credential_type":"AccessToken","client_id":"app","realm":"tid","secret":"s2","target":"read"},
  "app-at": {"environment":"login","credential_type":"AccessToken","client_id":"app","realm":"tenant-a","secret":"s3","target":"api/.default"},
  "app-ext": {"environment":"login","credential_type":"AccessToken","client_id":"app","realm":"tenant-a","secret":"s4","ext_cache_key":"h4sh"},
  "obo-at": {"home_account_id":"uid1.tid","user_assertion_hash":"aGFzaA==","client_id":"app","realm":"tid","secret":"s5"}
 },
 "RefreshToken": {
  "u1-rt": {"home_account_id":"uid1.tid","environment":"login","credential_type":"RefreshToken","client_id":"app","secret":"r1"},
  "u2-rt": {"home_account_id":"uid2.tid","environment":"login","credential_type":"RefreshToken","client_id":"app","secret":"r2"}
 },
 "IdToken": {"u1-id": {"home_account_id":"uid1.tid","realm":"tid","secret":"i1"}},
 "Account": {"u1": {"home_account_id":"uid1.tid","username":"alice"}, "u2": {"home_account_id":"uid2.tid","username":"bob"}},
 "AppMetadata": {"appmetadata-login-app": {"client_id":"app","environment":"login"}},
 "version": 1
}`

func entryKeys(s *Snapshot) string {
	var keys []string
	for _, name := range sectionNames(s) {
		for k := range s.Sections[name] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, " ")
}

func TestPartition(t *testing.T) {
	all := mustSnapshot(t, twoUsersAndAnApp)
	var o Owners
	for key, want := range map[string]string{
		"uid1.tid":                        "appmetadata-login-app u1 u1-at u1-id u1-rt",
		"uid2.tid":                        "appmetadata-login-app u2 u2-at u2-rt",
		"app_tenant-a_AppTokenCache":      "app-at appmetadata-login-app",
		"app_tenant-a_h4sh_AppTokenCache": "app-ext appmetadata-login-app",
		"aGFzaA==":                        "appmetadata-login-app obo-at",
		"app_tenant-b_AppTokenCache":      "",
		"":                                "",
	} {
		for range 2 { // the second pass uses the owners memo
			got := all.Partition(key, &o)
			if entryKeys(got) != want {
				t.Errorf("Partition(%q) = %q, want %q", key, entryKeys(got), want)
			}
			again := mustSnapshot(t, string(got.Raw))
			if !again.Equal(got) {
				t.Errorf("Partition(%q): Raw does not hold the partition", key)
			}
		}
	}
	if got := all.Partition("uid1.tid", nil); strings.Contains(string(got.Raw), "version") {
		t.Error("a top-level scalar went into a partition")
	}
}

func TestUnion(t *testing.T) {
	all := mustSnapshot(t, twoUsersAndAnApp)
	u := Union(all.Partition("uid1.tid", nil), all.Partition("uid2.tid", nil), all.Partition("app_tenant-a_AppTokenCache", nil))
	if got, want := entryKeys(u), "app-at appmetadata-login-app u1 u1-at u1-id u1-rt u2 u2-at u2-rt"; got != want {
		t.Errorf("Union = %q, want %q", got, want)
	}
	if !mustSnapshot(t, string(u.Raw)).Equal(u) {
		t.Error("Union's Raw does not hold the union")
	}
	if Union() != Empty || Union(Empty, Empty) != Empty {
		t.Error("the union of nothing is not Empty")
	}
}
