// Package lock is the cross-process lock of msalcache: one lock file,
// "<cache path>.lockfile", that every process of an app, and every other
// MSAL app of the same user, takes before it writes the cache; and, among
// msalcache's own processes, a second file next to it (see The own lock
// file).
//
//	l := lock.New(cachePath + ".lockfile")
//	unlock, err := l.Lock(ctx)
//	if err != nil {
//		return err // a timeout wraps context.DeadlineExceeded and names the holder
//	}
//	defer unlock()
//
// # Protocol
//
// Lock creates the lock file exclusively (mode 0600, missing directories
// 0700), takes an exclusive OS lock on the file it created (flock(2) on
// Unix, LockFileEx on Windows), checks that the path still names that file,
// and writes "pid argv0" into it. On Unix the exclusive create is a link of
// a file without a name that already holds "pid argv0" and the OS lock
// (linkat(2) fails if the name exists, as O_CREAT|O_EXCL does), so the lock
// file is never seen empty, a holder killed at any moment is recovered at
// once, and the lock is ours from the moment the file has its name. The
// file without a name is an O_TMPFILE file on Linux; elsewhere, and on file
// systems without O_TMPFILE, a private file in the same directory, unlinked
// once linked; where hard links are unsupported the create is
// O_CREAT|O_EXCL. On Windows it is CREATE_NEW.
// Unlock deletes the file while still holding the OS lock, then unlocks and
// closes it.
//
// If the file exists, Lock opens it and tries its OS lock without waiting.
// Held: a live holder; wait. Got it: read the pid, in any sister library's
// format ("pid", "pid argv0", "pid name\n", "{pid} {argv0}"). A live pid is a
// holder that uses no OS lock: wait, never take over. A dead pid (or this
// process's own, which cannot be holding: the in-process mutex is ours), or
// an empty file older than a second, is a crashed holder: if the path still
// names the file, adopt it under its OS lock (write our pid, keep the lock).
// No file is ever deleted except by its holder.
//
// Waiting polls with jittered exponential backoff (1 ms to 25 ms), and ends
// with ctx, or after the WithTimeout bound (default 30 s) if ctx has no
// deadline. Goroutines of one process wait on an in-process mutex per path
// instead, which also makes the lock visible to the race detector. Waiting
// for the own lock file polls the same way, within the same bound.
//
// Liveness of a pid is checked without sending anything: kill(pid, 0) on
// Unix (a zombie counts as dead: it has dropped its locks), OpenProcess and
// GetExitCodeProcess on Windows.
//
// The protocol is modelled in lock/model (Spin): two of our holders, an
// O_EXCL-only holder, an OS-lock-only holder and crashes at any step; the
// model checks that our holder never holds together with anyone. The model
// leaves the own lock file out, and need not check it again: taking it
// first and releasing it last only removes interleavings (two of our
// holders never run the lock file protocol at the same time), so whatever
// holds without it holds with it; and two of our holders still run the
// lock file protocol together whenever one is a version of this package
// from before the own lock file. What the own lock file adds, that our
// holders exclude each other even when someone deletes the lock file, rests
// on an OS lock of a file nobody deletes, and is tested with processes
// (TestProcessesLockFileDeleted).
//
// # The own lock file
//
// Before the lock file, Lock takes an exclusive OS lock on a second file,
// "<lock file>.msalcache", and it releases that lock after it has deleted the
// lock file. No sister library knows that file, and nobody deletes it: it
// is created empty (0600) by the first Lock and stays. It exists because
// the lock file alone cannot keep this package's processes apart from each
// other when a sister library deletes the lock file by name while one of
// them holds it. MSAL Python does that when it gives up waiting after 5 s:
// it goes ahead without the lock and, when it leaves, deletes
// "<lock file>", which by then is ours. The next process of this package
// would then create a new lock file and enter while the first is still
// inside. With the own lock file, it waits for the first to leave. Against
// the sister libraries the own lock file changes nothing: they still
// exclude us, and we them, through the lock file alone. A *Lock keeps the
// own lock file open between calls (Close releases it), so it costs two
// flock calls and a stat per Lock; a kept descriptor whose file was
// deleted after all is dropped and the file opened again. On Windows it is
// opened and closed at each Lock: a handle kept open would stop the
// directory from being removed.
//
// # Guarantees
//
// Among processes and goroutines using this package, at most one holds the
// lock at a time, on Linux, macOS, the BSDs and Windows, even when a sister
// library deletes the lock file under its holder; and a holder that
// dies (crash, SIGKILL, TerminateProcess) is replaced at the next poll: its
// OS lock is dropped by the kernel and its pid is dead. Tests: 8 processes × 250
// and 16 goroutines × 250 read-modify-write critical sections with an
// O_EXCL marker inside; takeover of a killed holder within 1 s; all on Linux
// under -race and on Windows under Wine.
//
// Against the sister libraries, over the same lock file:
//
//   - msal-node-extensions (O_EXCL create, its pid, no OS lock) and MSAL
//     Python without portalocker (O_EXCL): excluded both ways by the
//     exclusive create. We never take over from its live pid, and we
//     self-heal its stale file (dead pid) which it cannot do itself.
//   - MSAL Python with portalocker (flock on Unix, LockFileEx on Windows),
//     and AzureAD's Go extension (gofrs/flock: flock, or LockFileEx on byte
//     0): excluded both ways by the OS lock, which we take on byte 0 on
//     Windows, inside their ranges. On Windows they open the file without
//     sharing delete access; our handles ask for none, so their open
//     succeeds and their lock waits (see Windows below).
//   - .NET MsalCacheHelper (FileShare.None and DeleteOnClose; flock on
//     Unix): on Unix by the OS lock; on Windows its open fails while we hold
//     the file, and ours while it does (a sharing violation, which each side
//     waits out: .NET retries).
//
// # Limits
//
// These are accepted risks; none is specific to this package.
//
//   - Pids: a pid in the file is trusted to name the holder. A leftover file
//     whose pid has been reused by an unrelated live process, or that names a
//     process in another pid namespace (a container sharing the directory),
//     is taken for a live O_EXCL holder: Lock waits and its timeout error
//     names that pid and says to delete the file if no app uses it. A dead pid
//     of another namespace can look dead here while its process lives.
//   - An O_EXCL-only holder is assumed to write its pid within a second of
//     creating the file; an empty file older than that is adopted.
//   - Libraries that delete the lock file by name after releasing their OS
//     lock (AzureAD's Go extension, MSAL Python with portalocker), or that
//     open the file and lock it in two steps without checking that the path
//     still names it (.NET, gofrs/flock, portalocker), race with any holder
//     that deletes the file, their own kind included: for a few
//     microseconds, a file can be deleted under a holder. We check the name
//     after taking the OS lock, before adopting, and before deleting, which
//     closes that window for our side; the unlock error reports a file that
//     was deleted under us. MSAL Python also deletes the lock file when it
//     leaves after going ahead without it: then the lock does not exclude
//     it, nor the sister library that comes next, from our holder (our
//     processes still exclude each other: see The own lock file). The
//     O_EXCL-only and the OS-lock-only libraries do not exclude each other
//     at all.
//   - File systems without flock (some NFS setups) make Lock fail; every
//     other error (a directory that cannot be created or written) is returned
//     at once, not after the timeout. GOOS without flock or LockFileEx
//     (aix, solaris, plan9, js, wasip1) return errors.ErrUnsupported.
//   - The lock is not fair and not reentrant.
//
// # Windows
//
// The lock file is opened with CreateFile rather than os.OpenFile, to share
// delete access (the holder deletes the file while waiters have it open).
// The lock handle asks for read and write access only, and the file is not
// delete-on-close: either would make the open of gofrs/flock and portalocker,
// which do not share delete access, fail with a sharing violation instead
// of waiting for the lock. Unlock deletes the file through a second handle
// opened for that alone, after checking it names the file we hold (never
// blindly by name). While a waiter of those libraries keeps the file open,
// that open fails: after a few tries within milliseconds, Unlock leaves the
// file, empty and dated in the past, which every reader of this protocol
// takes as free (an empty file older than a second) and adopts at once. A
// deleted file keeps its name until every handle is closed; meanwhile
// opening it fails with access denied, which Lock treats as busy. POSIX
// delete semantics are used where available (Windows 10 1809 and later; not
// Wine). A holder that dies leaves its file with its dead pid, adopted at
// the next poll. The byte-range lock is mandatory, so others cannot read
// byte 0 of a held file: our pid follows a leading space and a waiter reads
// from byte 1.
//
// gofrs/flock is not used directly: it opens the file by path itself and
// does not expose its handle, while the protocol must lock exactly the file
// it created or inspected, and write through that handle. Lock makes the
// same system calls gofrs/flock makes (flock(2) LOCK_EX; LockFileEx on byte
// 0), so the two interoperate; the tests check that.
//
// # Cost
//
// An uncontended Lock and unlock costs a create, a write and a delete of
// the lock file, which a lock file the sister libraries understand requires,
// plus two flock calls and two stats, and two flock calls and a stat on
// the own lock file; BenchmarkLock, BenchmarkFlock (bare
// gofrs/flock) and BenchmarkExclFloor (the create, write and delete alone)
// measure it. The figures of one run are in the Performance table of the
// README (https://github.com/msalcache/msalcache#performance), the one place
// they are kept.
package lock
