//go:build !unix

package persistence

// watcher: on Windows an open handle would make other processes' renames
// over the file fail, so Stat stats the path each time.
type watcher struct{}

func (*watcher) stat(path string) (Version, error) { return statVersion(path) }

func (*watcher) close() error { return nil }
