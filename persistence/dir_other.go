//go:build !unix

package persistence

// checkDir: directory permissions are ACLs on Windows (inherited from the
// user profile for the usual cache locations); they are not checked here.
func checkDir(string) error { return nil }

func checkDirTree(string) error { return nil }
