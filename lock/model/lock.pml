/*
 * A model of the lock protocol of package lock (Unix file semantics), for
 * the Spin model checker. Check it with:
 *
 *   spin -a -DNO_OSLOCK lock.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -m100000
 *   spin -a -DNO_EXCL lock.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -m100000
 *
 * or run check.sh next to this file, which also checks that the model finds
 * the bugs it should (see the variants below).
 *
 * Processes:
 *   1, 2  this package (two processes, or two goroutines: the same thing
 *         here), looping Lock / critical section / unlock; each creation
 *         is either a link of a locked file that holds our pid (the usual
 *         way) or, where hard links are unsupported, an O_EXCL create that
 *         is locked and written afterwards;
 *   3     an O_EXCL-only holder (msal-node-extensions, MSAL Python without
 *         portalocker): create with O_EXCL, write its pid, hold without an
 *         OS lock, delete the file by name;
 *   4     an OS-lock-only holder (.NET MsalCacheHelper on Unix, portalocker
 *         alike): open the path creating it if absent, flock without
 *         blocking, write its pid, delete the file by name while it holds
 *         the lock, unlock;
 *   a killer that crashes up to MAXKILLS of them at any step: the kernel
 *         drops a dead process's OS lock and closes its file; the file and
 *         its pid stay.
 *   an ager that makes an empty lock file "older than a second" at any
 *         time, except one an O_EXCL holder created and has not written its
 *         pid into yet while it lives (assumption: it writes its pid within
 *         a second of creating the file).
 *
 * Checked: a holder of this package never holds together with any other
 * holder. Pids are not reused (assumption).
 *
 * Processes 3 and 4 do not exclude each other, and when both hold, each
 * deletes the file by name and may delete a file someone else holds by
 * then, ours included: spin finds that with both running. So the model is
 * checked twice, ours with each kind of foreign holder (-DNO_OSLOCK,
 * -DNO_EXCL). Ours with ours is in both.
 *
 * Variants (-D at the spin -a step), each of which must find a violation:
 *   NO_IDENTITY    we skip the check that the path still names the file we
 *                  locked;
 *   NO_LIVENESS    we take over a file whose pid is alive;
 *   LINK_UNLOCKED  we link our file before we flock it, and take it as
 *                  ours without checking that the path still names it;
 *   DOTNET_WINDOW  process 4's open and flock are separate steps, as they
 *                  really are: a release that deletes the file between them
 *                  leaves it holding a deleted file. This window (between
 *                  two system calls) exists between .NET processes too;
 *                  the main model assumes it away.
 */

#define NP 4           /* processes 1..NP */
#ifndef MAXKILLS
#define MAXKILLS 2
#endif
/* inodes 1..NI: enough for one open file per process plus the named one */
#if defined(NO_OSLOCK) || defined(NO_EXCL)
#define NI 4
#else
#define NI 5
#endif

typedef Inode {
	bool linked;   /* named by the lock path */
	byte refs;     /* open files */
	byte owner;    /* pid written into it; 0: empty */
	byte creator;
	bool old;      /* empty for more than a second */
	byte flock;    /* holder of its OS lock; 0: none */
};

Inode ino[NI+1];
byte path;           /* inode the lock path names; 0: none */
byte fd[NP+1];       /* the file each process has open; 0: none */
bool dead[NP+1];
bool cs[NP+1];       /* in the critical section */
byte kills;

#define ours(p) ((p) == 1 || (p) == 2)
#define safe (!(cs[1] && cs[2]) && !((cs[1] || cs[2]) && (cs[3] || cs[4])))

/* alloc(r): a free inode, now named by the path, created by me. */
inline alloc(r) {
	r = 1;
	do
	:: r > NI -> assert(false)
	:: r <= NI && (ino[r].linked || ino[r].refs > 0) -> r++
	:: r <= NI && !ino[r].linked && ino[r].refs == 0 -> break
	od;
	ino[r].linked = 1; ino[r].owner = 0; ino[r].old = 0; ino[r].flock = 0;
	ino[r].creator = me;
	path = r
}

/* gc(i): a free inode (no name, not open) forgets everything, so that
 * states differing only in garbage are one state. */
inline gc(i) {
	if
	:: !ino[i].linked && ino[i].refs == 0 ->
		ino[i].owner = 0; ino[i].creator = 0; ino[i].old = 0; ino[i].flock = 0
	:: else
	fi
}
inline open(f) { fd[me] = f; ino[f].refs++ }
inline close(f) { fd[me] = 0; ino[f].refs--; gc(f); f = 0 }
inline unlockclose(f) { atomic { ino[f].flock = 0; close(f) } }
inline unlinkpath() { atomic { if :: path != 0 -> ino[path].linked = 0; gc(path); path = 0 :: else fi } }
inline enter() { atomic { cs[me] = 1; assert(safe) } }
inline leave() { cs[me] = 0 }

proctype Ours(byte me) {
	byte f, c;
	{
	do
	:: skip; /* Lock */
try:		atomic {
			if
			:: path == 0 -> /* a file without a name (O_TMPFILE, or a private
				 * file), flocked and with our pid in it, linked to the path:
				 * fails if it exists, like O_EXCL; ours from the first moment */
#ifndef LINK_UNLOCKED
				alloc(f); open(f); ino[f].flock = me; ino[f].owner = me; goto own
#else
				alloc(f); open(f); ino[f].owner = me; goto lockafter
#endif
			:: path == 0 -> alloc(f); open(f); goto created /* no hard links: O_EXCL create */
			:: else
			fi
		}
		atomic { /* open the existing file */
			if
			:: path == 0 -> goto try
			:: else -> f = path; open(f)
			fi
		}
		atomic { /* flock, non-blocking */
			if
			:: ino[f].flock == 0 -> ino[f].flock = me
			:: else -> close(f); goto try
			fi
		}
		c = ino[f].owner; /* read the pid */
		if
#ifndef NO_LIVENESS
		:: c != 0 && c != me && !dead[c] -> c = 0; unlockclose(f); goto try /* live holder without OS lock */
#endif
		:: c != 0 && (c == me || dead[c]) -> c = 0; goto adopt /* stale */
#ifdef NO_LIVENESS
		:: c != 0 -> c = 0; goto adopt
#endif
		:: c == 0 && ino[f].old -> goto adopt /* empty, older than a second */
		:: c == 0 && !ino[f].old -> unlockclose(f); goto try /* being created */
		fi;
created:	atomic { ino[f].flock == 0 -> ino[f].flock = me } /* wait for the OS lock on our file */
#ifndef NO_IDENTITY
		if
		:: path != f -> unlockclose(f); goto try
		:: else
		fi;
#endif
		goto own;
#ifdef LINK_UNLOCKED
lockafter:	atomic { ino[f].flock == 0 -> ino[f].flock = me }
		goto own;
#endif
adopt:
#ifndef NO_IDENTITY
		/* the path still names it? Checked after the pid: an O_EXCL holder
		 * may release (delete) its file and then die while we look. */
		if
		:: path != f -> unlockclose(f); goto try
		:: else
		fi;
#endif
own:		ino[f].owner = me; /* write our pid */
		enter();
		leave();
		/* unlock: delete (if the path is still ours), unlock, close */
		if
		:: path == f -> unlinkpath()
		:: else
		fi;
		unlockclose(f)
	od
	} unless { dead[me] }
}

proctype Excl(byte me) {
	byte f;
	{
	do
	:: atomic { path == 0 -> alloc(f); open(f) }  /* O_EXCL create; polls while the file exists */
		ino[f].owner = me;
		atomic { close(f) };
		enter();
		leave();
		unlinkpath() /* fs.unlink by name */
	od
	} unless { dead[me] }
}

proctype OSLock(byte me) {
	byte f;
	{
	do
	:: atomic {
			if /* open, creating if absent */
			:: path == 0 -> alloc(f)
			:: else -> f = path
			fi;
			open(f);
#ifdef DOTNET_WINDOW
		}
		atomic {
#endif
			if /* flock, non-blocking */
			:: ino[f].flock == 0 -> ino[f].flock = me
			:: else -> close(f)
			fi
		}
		if
		:: f != 0 ->
			ino[f].owner = me;
			enter();
			leave();
			unlinkpath(); /* delete on close: unlink while holding */
			unlockclose(f)
		:: else
		fi
	od
	} unless { dead[me] }
}

/* crash: the kernel closes a dead process's file and drops its OS lock. */
active proctype Killer() {
	byte v;
	do
	:: kills < MAXKILLS ->
		atomic {
			if
			:: v = 1
			:: v = 2
			:: v = 3
			:: v = 4
			fi;
			if
			:: !dead[v] ->
				dead[v] = 1; cs[v] = 0; kills++;
				if
				:: fd[v] != 0 ->
					if
					:: ino[fd[v]].flock == v -> ino[fd[v]].flock = 0
					:: else
					fi;
					ino[fd[v]].refs--; gc(fd[v]); fd[v] = 0
				:: else
				fi
			:: else
			fi;
			v = 0
		}
	:: kills >= MAXKILLS -> break
	od
}

/* time passes: an empty lock file gets older than a second. */
active proctype Ager() {
	byte i;
	do
	:: atomic {
			select(i : 1 .. NI);
			if
			:: ino[i].linked && ino[i].owner == 0 && !ino[i].old &&
			   (ino[i].creator != 3 || dead[3]) -> ino[i].old = 1
			:: else
			fi;
			i = 0
		}
	od
}

init {
	atomic {
		run Ours(1);
		run Ours(2);
#ifndef NO_EXCL
		run Excl(3);
#endif
#ifndef NO_OSLOCK
		run OSLock(4)
#endif
	}
}
