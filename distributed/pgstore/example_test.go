package pgstore_test

import (
	"log"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/redisstore"
)

// A web app's replicas share one token cache in PostgreSQL. (Not run: it
// needs a PostgreSQL server.)
func ExampleOpen() {
	store, err := pgstore.Open("postgres://webapp:password@db.example.com:5432/webapp?sslmode=verify-full",
		pgstore.WithDialTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	cache, err := distributed.New(store, distributed.WithTTL(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	defer cache.Close()
	// confidential.New(authority, clientID, cred, confidential.WithCache(cache))
}

// A role without the right to create tables, on tables an administrator
// created (see the package documentation), with the expiry cleanup left to
// a scheduled job.
func ExampleWithExistingSchema() {
	store, err := pgstore.Open("postgres://webapp@db.example.com/webapp?sslmode=verify-full",
		pgstore.WithExistingSchema(), pgstore.WithCleanupInterval(0))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
}

// Redis serves the reads, PostgreSQL keeps the truth: a Redis that loses
// its data signs nobody out.
func ExampleOpen_tiered() {
	redis, err := redisstore.Open("rediss://cache.example.com:6380")
	if err != nil {
		log.Fatal(err)
	}
	db, err := pgstore.Open("postgres://webapp@db.example.com/webapp?sslmode=verify-full")
	if err != nil {
		redis.Close()
		log.Fatal(err)
	}
	store := distributed.Tiered(redis, db) // its Close closes both
	defer store.Close()
}
