// Package tieredtest holds the tests of distributed.Tiered on real servers:
// a redis-server as the first layer, and as the second a memory store or a
// PostgreSQL server. They are tests of two packages at once (the tandem in
// distributed, the layers in redisstore and pgstore), so they live in a
// package of their own, which the library does not import.
//
// The tests need redis-server (and PostgreSQL for the second layer); they
// are not built for Windows.
package tieredtest
