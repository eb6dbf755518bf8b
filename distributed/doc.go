// Package distributed is a partitioned MSAL token cache for confidential
// clients (web apps, web APIs, daemons): one blob per partition key (a user's
// home account ID, or a client and tenant for app tokens) in a shared Store,
// used by many goroutines, processes and machines at once.
//
// Work in progress: the Store contract is in store.go; the Cache follows.
package distributed
