// Package storetest is the conformance suite of distributed.Store. The
// stores of this module run it from their tests (the memory store, Redis
// standalone and cluster, PostgreSQL, Tiered); someone writing another store
// (DynamoDB, Cosmos DB, SQL Server, ...) runs the same checks from a test
// file of their own:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) func() distributed.Store {
//			// Prepare one backend for this test (a table, a container, a
//			// key prefix) and return a function that opens a client of it.
//			return func() distributed.Store {
//				s, err := mystore.Open(url)
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { s.Close() })
//				return s
//			}
//		})
//	}
//
// The package needs only the standard library's testing and the
// distributed package: no test framework, nothing internal to this module.
//
// # What each check demands
//
// Every check runs as a subtest named below, on keys named after the test,
// so backends may share one keyspace between tests.
//
//   - Missing: Load of a missing key returns (nil, 0, nil); Touch of a
//     missing key is no error and creates nothing; Store with prev != 0 on a
//     missing key returns an error wrapping distributed.ErrConflict.
//   - CompareAndSet: Store writes only when the key holds prev (0: holds
//     nothing); otherwise it returns ErrConflict and changes nothing. Empty
//     and 1 MiB binary values round-trip exactly.
//   - NextVersionMustBeNew: a write whose next equals prev, or is 0, is
//     refused (readers compare versions, so a version is never reused for a
//     key).
//   - ValuesAreCopied: the store keeps no reference to the caller's slices,
//     and the caller may change what Load returned.
//   - OtherClientSeesWrites: two clients of one backend see each other's
//     writes, including through any client-side cache, within the suite's
//     wait bound (10 s).
//   - TTL: a value stored with a ttl is gone (Load returns version 0) after
//     it, and can then be created again with prev 0; ttl 0 never expires.
//   - Touch: Touch(ttl) slides the expiry without changing value or version;
//     Touch(0) removes the expiry; an untouched key expires.
//   - ConcurrentWriters: 8 goroutines on two clients increment a counter
//     through Load, Store and retry on ErrConflict; no increment is lost.
//   - Notify: the store implements distributed.Notifier; every registered
//     listener hears a key (or "") when another client creates or changes a
//     key this client loaded.
//   - CanceledContext: Store with a canceled ctx fails and writes nothing
//     (every method honours ctx).
//   - Scan, for a store that implements the optional distributed.Scanner:
//     every live key under a prefix is listed (at least once) in batches
//     that end with cursor "", nothing outside the prefix is, even when it
//     holds * ? [ ] \ % or _, and a canceled ctx is an error.
//   - Close: every call after Close returns an error wrapping net.ErrClosed;
//     a second Close returns nil (Scan too, if implemented).
package storetest
