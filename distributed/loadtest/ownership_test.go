package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// entries counts the entries of s that belong to one partition (all but
// the app metadata, which every partition carries).
func entries(s *msaljson.Snapshot) int {
	n := 0
	for name, section := range s.Sections {
		if name != "AppMetadata" {
			n += len(section)
		}
	}
	return n
}

// tagEntries returns s with field set to value in every entry but the app
// metadata.
func tagEntries(t testing.TB, s *msaljson.Snapshot, field, value string) *msaljson.Snapshot {
	t.Helper()
	sections := map[string]map[string]json.RawMessage{}
	for name, section := range s.Sections {
		sections[name] = map[string]json.RawMessage{}
		for k, entry := range section {
			var fields map[string]any
			if err := json.Unmarshal([]byte(entry), &fields); err != nil {
				t.Fatal(err)
			}
			if name != "AppMetadata" {
				fields[field] = value
			}
			js, err := json.Marshal(fields)
			if err != nil {
				t.Fatal(err)
			}
			sections[name][k] = js
		}
	}
	js, err := json.Marshal(sections)
	if err != nil {
		t.Fatal(err)
	}
	out, err := msaljson.Parse(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// msalMemory is MSAL Go's cache JSON for users (home account IDs) of
// tenant tid and app tokens of client daemon in the given tenants, shaped
// as MSAL writes it.
func msalMemory(t *testing.T, users, tenants []string) *msaljson.Snapshot {
	t.Helper()
	const env, client, daemon = "login.example", "web-client", "daemon-client"
	sections := map[string]map[string]map[string]string{
		"AccessToken": {}, "RefreshToken": {}, "IdToken": {}, "Account": {},
		"AppMetadata": {"appmetadata-" + env + "-" + client: {"client_id": client, "environment": env}},
	}
	for _, home := range users {
		sections["AccessToken"][home+"-"+env+"-accesstoken-"+client+"-tid-api://x/read"] = map[string]string{
			"home_account_id": home, "environment": env, "credential_type": "AccessToken", "client_id": client,
			"secret": "at-" + home, "realm": "tid", "target": "api://x/read", "expires_on": "1999999999"}
		sections["RefreshToken"][home+"-"+env+"-refreshtoken-"+client+"--"] = map[string]string{
			"home_account_id": home, "environment": env, "credential_type": "RefreshToken", "client_id": client, "secret": "rt-" + home}
		sections["IdToken"][home+"-"+env+"-idtoken-"+client+"-tid-"] = map[string]string{
			"home_account_id": home, "environment": env, "credential_type": "IdToken", "client_id": client, "realm": "tid", "secret": "id-" + home}
		sections["Account"][home+"-"+env+"-tid"] = map[string]string{
			"home_account_id": home, "environment": env, "realm": "tid", "username": home + "@example", "authority_type": "MSSTS"}
	}
	for _, tenant := range tenants {
		sections["AccessToken"]["-"+env+"-accesstoken-"+daemon+"-"+tenant+"-api://d/.default"] = map[string]string{
			"environment": env, "credential_type": "AccessToken", "client_id": daemon, "realm": tenant,
			"secret": "app-" + tenant, "target": "api://d/.default", "expires_on": "1999999999"}
	}
	js, err := json.Marshal(sections)
	if err != nil {
		t.Fatal(err)
	}
	s, err := msaljson.Parse(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// appPartition is MSAL Go's partition key of daemon-client's app tokens
// in tenant.
func appPartition(tenant string) string { return "daemon-client_" + tenant + appSuffix }

// TestOwnershipIsCheckedFromTheEntries: records written by deliberately
// wrong writers are caught by the check, which reads each entry's own
// fields. One of them is wrong in a way the writer's partition function
// (msaljson's) agrees with: B's tokens marked with A's key as their
// user_assertion_hash are A's by that function (on-behalf-of first), so a
// check through it counted nothing foreign.
func TestOwnershipIsCheckedFromTheEntries(t *testing.T) {
	const prefix = "p:"
	key := bytes.Repeat([]byte{9}, 32)
	a, b := "uid-a.tid", "uid-b.tid"
	mem := msalMemory(t, []string{a, b}, []string{"t1", "t2"})
	partitions := map[string]bool{a: true, b: true, appPartition("t1"): true, appPartition("t2"): true}
	keys, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	// store seals, per partition, what a writer computed for it.
	store := func(content map[string]*msaljson.Snapshot) map[string][]byte {
		records := map[string][]byte{}
		for p, s := range content {
			skey := recordfmt.StoreKey(prefix, p)
			records[skey] = recordfmt.Seal(recordfmt.Header{Gen: 1}, s.Encode(), skey, keys)
		}
		return records
	}
	// right is the Cache's writer: each partition computed from the
	// entries (msaljson).
	right := func() map[string]*msaljson.Snapshot {
		out := map[string]*msaljson.Snapshot{}
		for p := range partitions {
			out[p] = mem.Partition(p, nil)
		}
		return out
	}
	bEntries := entries(mem.Partition(b, nil))
	// tagged is b's entries, each marked with user_assertion_hash a.
	tagged := func() *msaljson.Snapshot { return tagEntries(t, mem.Partition(b, nil), "user_assertion_hash", a) }
	cases := []struct {
		name    string
		wrong   func(map[string]*msaljson.Snapshot)
		foreign int
	}{
		{"the Cache's writer", func(map[string]*msaljson.Snapshot) {}, 0},
		{"B's entries in A's partition", func(c map[string]*msaljson.Snapshot) {
			c[a] = msaljson.Union(c[a], c[b])
		}, bEntries},
		{"B's entries in A's partition, which the writer's function takes for A's", func(c map[string]*msaljson.Snapshot) {
			c[a] = msaljson.Union(c[a], tagged())
		}, bEntries},
		{"tenant t2's app token in t1's app partition", func(c map[string]*msaljson.Snapshot) {
			c[appPartition("t1")] = msaljson.Union(c[appPartition("t1")], c[appPartition("t2")])
		}, 1},
		{"a user's entries in an app partition", func(c map[string]*msaljson.Snapshot) {
			c[appPartition("t1")] = msaljson.Union(c[appPartition("t1")], c[a])
		}, entries(mem.Partition(a, nil))},
		{"an app token in a user's partition", func(c map[string]*msaljson.Snapshot) {
			c[b] = msaljson.Union(c[b], c[appPartition("t2")])
		}, 1},
	}
	for _, c := range cases {
		content := right()
		c.wrong(content)
		in, err := check(store(content), prefix, key, partitions)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := inspection{partitions: len(partitions), foreign: c.foreign}
		if in != want {
			t.Errorf("%s: check = %+v, want %+v", c.name, in, want)
		}
	}
	if bEntries == 0 {
		t.Fatal("no entries of B to plant")
	}
}

// TestOwnsRefusesWhatItCannotRead: an entry that is not an object of
// fields belongs to no partition; a section that is not an object of
// entries is an error.
func TestOwnsRefusesWhatItCannotRead(t *testing.T) {
	for _, e := range []string{`[]`, `"x"`, `{"home_account_id": 7}`} {
		if owns("uid.tid", json.RawMessage(e)) {
			t.Errorf("%s is owned", e)
		}
	}
	if _, err := foreignEntries([]byte(`{"AccessToken": 3}`), "uid.tid"); err == nil {
		t.Error("a section that is a number was accepted")
	}
	if n, err := foreignEntries([]byte(`{"AppMetadata": {"m": {"client_id": "c"}}}`), "uid.tid"); n != 0 || err != nil {
		t.Errorf("app metadata: %d foreign, %v", n, err)
	}
}
