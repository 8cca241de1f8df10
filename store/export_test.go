package store

import "testing"

// OpenQueryDB opens the query benchmarks' database (openQueryDB) for the benchmarks of package
// store_test.
func OpenQueryDB(b *testing.B) (s *Store, parts int) { return openQueryDB(b) }
