/*
 * A model of the partition protocol of package distributed, for the Spin
 * model checker: one partition (one user's tokens) of a shared Store, two
 * replicas (Caches) that read and write it, each with one MSAL client shared
 * by its requests. Run check.sh next to this file; it checks the protocol
 * and each variant below (which must fail).
 *
 * What is modelled (each step names the code it stands for):
 *   the store      one record: absent, a tombstone (At: the removal's time)
 *                  or a live generation (Gen, At: when it began, After: the
 *                  tombstone it follows) holding a set of tokens; a write is
 *                  a compare-and-set, so a writeStore attempt that succeeds is
 *                  one atomic step here (load, merge, store with the version
 *                  it loaded); a conflict is a retry from a fresh load.
 *   a view         what a replica's client holds of the partition
 *                  (view.parts[key]): present or evicted, tombstone or live,
 *                  tokens, generation, synced (servable without a store read).
 *   MSAL           a refresh (AcquireTokenSilent: Replace at its start, then,
 *                  after the HTTP call, Replace, manager.Write and Export under
 *                  the client's write lock), a sign-in (AcquireTokenByAuthCode:
 *                  one Replace right before its Export), a sign-out
 *                  (RemovePartition).
 *   the store out  per replica, beginning and ending at any step: writes are
 *                  kept (pending) and written back in order by writeBack.
 *   eviction       the working set churns: the partition leaves the view at
 *                  any step between two requests' locked sections.
 *   notices        a write reaches every view (the store's notices, the
 *                  writer's own view.written/stale) before that view's next
 *                  read: the coherence bound is far below the time between
 *                  two timed events (below); a replica cut off gets none and
 *                  reads everything again when the store returns. A view
 *                  that has not seen a change is modelled by the replica cut
 *                  off, and by a write in flight (begun, not yet stored).
 *   key rotation   (ROTATION) replica 1 seals with a new key; replica 0 lacks
 *                  it (cannot read what 1 sealed) until its deploy, at any step.
 *   time           a logical clock: every timed event (a request's read of the
 *                  partition, a sign-out) takes the next value, and every
 *                  replica reads the same clock (wall clocks agree far better
 *                  than the time between such events: doc.go's assumption).
 *
 * Tokens are bits of a byte: bit 0 is the session that exists at the start
 * (signed in at time 0), bit i the tokens request i writes. Content is a set
 * of tokens; Merge(base, ours, theirs) applies ours' changes from base to
 * theirs (msaljson.Merge).
 *
 * Checked, when every request has ended, the store is back for everyone and
 * every kept write is written back (end), and at every store write:
 *   SIGNOUT  a sign-out is undone only by a sign-in that began after it: no
 *            token in the store was written by a request that began before
 *            a sign-out (whichever replica it was made on, kept or not),
 *            nor by a refresh of a session that a sign-out already stored
 *            had removed when the refresh began (a replica cut off from the
 *            store refreshing what it still held). A refresh continues the
 *            newest session it holds.
 *   KEPT     a write whose Export returned nil is never lost: its token is
 *            stored, or the session it continues began before a sign-out
 *            (dropped, or removed, because the user signed out after it
 *            began), or a sign-out made on another replica that this write
 *            could not see (kept there during an outage, or in flight) was
 *            stored after the write.
 *   UNREAD   no write lands based on what its replica could not read (a
 *            blob sealed with a key the writer lacks is never overwritten).
 *
 * Not modelled: clock ties (order's rule for a write based on the very
 * tombstone it lands on decides only those), more than one partition (partitions are independent; other
 * partitions appear only as the eviction they cause), anonymous contexts
 * (a request's reads are always told apart), the queue bound's merge of two
 * kept writes (the queue here never fills), TTL expiry, the L1 layer (a view
 * that serves without reading is the same staleness), app partitions.
 *
 * Variants (-D at the spin -a step), each of which must be caught:
 *   ITEM1   today's view rule: a write into a partition the view knows is
 *           removed is dropped if the view read it alive (any request):
 *           the sign-in right after a sign-out is dropped (KEPT).
 *   ITEM2   today's writeStore: a write is dropped only if its base
 *           generation is not zero and differs from the store's; otherwise
 *           merged, and a tombstone's removal time is the time it was
 *           written: a kept sign-in undoes a later sign-out (SIGNOUT).
 *   ITEM3   today's keep(): one kept write per partition; a sign-in after a
 *           kept sign-out replaces it by a write based on nothing: the
 *           tombstone is never written and the old tokens stay (SIGNOUT).
 *   ITEM4   the read log lives in view.parts (as aliveAt does today): the
 *           eviction of the partition during a refresh forgets that the
 *           request read it alive, and when (SIGNOUT).
 *   ITEM10  a replica that cannot open the stored blob takes it as empty and
 *           overwrites it (UNREAD).
 *   LEADAT  the merge into a live generation keeps its At: a kept sign-out
 *           older than a write merged into a newer generation is dropped,
 *           and that write survives it (SIGNOUT).
 *   LEADAFTER  a sign-out dropped because the store's generation began
 *           after it leaves the generation's After as it was: a write begun
 *           before the sign-out is merged afterwards (SIGNOUT).
 *   LEADREFRESH  a refresh merges into a live generation that began
 *           after the refresh did: a replica cut off from the store served
 *           tokens of a user who then signed out elsewhere and signed in
 *           again; its refresh of the old tokens joins the new generation
 *           (SIGNOUT). Amendment: a refresh begun before the generation's
 *           At is dropped (it refreshes older tokens).
 *   NOREFRESH  without order's rule that a refresh never starts a new
 *           generation over a tombstone: the same replica's refresh of
 *           tokens a stored sign-out removed comes back (SIGNOUT).
 *   CODE    the rules as first built, before the code adopted what this
 *           model found (order.go order,
 *           write.go write): a kept sign-out is dropped by a newer
 *           generation without raising After (LEADAFTER); a merge keeps At
 *           (LEADAT); a write goes to the store whenever the store is up,
 *           ahead of the writes kept for its partition; a write over what
 *           its replica cannot read is withheld (dropped: counted and
 *           warned, Export returns nil; not a loss for KEPT here).
 *           No LEADREFRESH amendment either. Caught in scenario A (KEPT:
 *           a refresh of a kept sign-in, made once the store is back and
 *           before the write-back wrote it, goes first and is dropped as a
 *           refresh over the tombstone), B (KEPT: a sign-in right after the store
 *           returns overtakes the kept sign-out, is merged into the old
 *           generation, and the sign-out's write-back removes it) and C
 *           (SIGNOUT, LEADAT with a kept sign-out).
 *
 * The protocol checked (no variant) is PROTOCOL's design as order.go
 * builds it (a sign-out not kept tombstones whatever the store holds, at
 * its At + 1 ms; a kept one supersedes the writes kept before it), except
 * where CODE says: three amendments (LEADAT, LEADAFTER, LEADREFRESH), and a write made
 * while writes are kept for its partition is kept behind them.
 */

#define NR 2           /* replicas 0, 1 */
#define NT 5           /* tokens 0..NT-1: session 0 and requests 1..NT-1 */
#ifdef ITEM3
#define NQ 1           /* today: one kept write per partition */
#else
#define NQ 3           /* kept writes per replica (code: bounded, merged when full) */
#endif
#ifndef OUTAGES
#define OUTAGES 1      /* outages per replica */
#endif
#ifndef EVICTS0
#define EVICTS0 1      /* evictions of the partition from replica 0's view */
#endif
#ifndef EVICTS1
#define EVICTS1 1
#endif

#define WRITTEN 0
#define DROPPED 1
#define FAILED  2

#define bit(i) (1 << (i))
#define other(r) (1 - (r))

byte now = 1;          /* the logical clock; 0: the initial sign-in */

/* The store's record (recordfmt.Header and the sealed content). */
bool sHas = 1;         /* a record exists */
bool sRem;             /* Header.Removed */
byte sGen = 1;         /* Header.Gen */
byte sAt;              /* Header.At */
byte sAfter;           /* Header.After */
byte sTok = 1;         /* the content: session 0 */
bool sNew;             /* sealed with the new key (ROTATION) */
byte gens = 1;         /* newGen */

/* Each replica. */
bool down[NR];         /* the store is out for it (Cache.down; failed/recover) */
byte outs[NR];
byte evicts[NR];
bool hasNew[NR];       /* holds the new key (ROTATION) */
bool locked[NR];       /* its client's lock is held for writing (MSAL's
                        * AuthResultFromToken: Replace, Write, Export) */

/* Each replica's view of the partition (view.parts[key], one shared client). */
bool vHas[NR];         /* in the working set */
bool vRem[NR];         /* part.removed */
byte vTok[NR];         /* part.snap: what MSAL holds of the partition */
byte vGen[NR];         /* part.gen */
bool vSynced[NR];      /* part.synced: view.current serves it */
bool vAliveAt[NR];     /* part.aliveAt is set (ITEM1: within inFlight) */
byte vEpoch[NR];       /* evictions so far (ITEM4: the log kept in the part) */

/* Each replica's kept writes (Cache.pending[key]), oldest first. */
byte qn[NR];
bool qTaken[NR];       /* writeBack holds the head between taking and writing */
byte qRem[NR*NQ];    
byte qBegan[NR*NQ];    /* began: a removal's call time, a write's earliest read */
bool qAlive[NR*NQ];    /* its request is a refresh (pendingWrite.refresh) */
byte qBase[NR*NQ];
byte qOurs[NR*NQ];
byte qGen[NR*NQ];      /* base generation (today's check) */

/* Ghosts: what happened, for the checks only. */
byte tokStart[NT];     /* when the request that wrote token i began (0: session 0) */
byte tokSess[NT];      /* when the session token i continues began */
byte tokOn[NT];        /* the replica that wrote it */
byte exported;         /* tokens whose Export returned nil */
byte excused;          /* tokens a sign-out they could not see removed after them */
byte lastOut;          /* the time of the latest sign-out (0: none) */
byte outsCalled;       /* sign-outs called and not returned */
byte landedOut;        /* the latest sign-out stored so far */
byte stale;            /* refreshes of a session a stored sign-out had removed when they began */
byte running;          /* requests and sign-outs not ended */
/* The checks (named so that spin's report names the one violated). */
bool signOutUndone;    /* SIGNOUT */
bool keptWriteLost;    /* KEPT */
bool overwritesUnread; /* UNREAD */

/* merge: msaljson.Merge(base, ours, theirs) on token sets. */
#define merge(base, ours, theirs) (((theirs) & ~((base) & ~(ours))) | ((ours) & ~(base)))

/* timed: a timed event takes the next value of the clock. */
#define timed() now = now + 2 /* odd values: a millisecond after an event (order's +1 ms) */

/* changed: the store changed: every view reads it again at its next
 * Replace (the writer's: writeStore's l1.invalidate, view.written; the
 * other replica's: the store's notice; a replica cut off: recover). */
#define changed() vSynced[0] = 0; vSynced[1] = 0

/* Variables only a variant uses stay constant otherwise (fewer states). */
#ifdef ITEM1
#define setAliveAt(r, x) vAliveAt[r] = x
#else
#define setAliveAt(r, x) skip
#endif
#ifdef ITEM2
#define newGen() gens++; sGen = gens
#else
#define newGen() skip
#endif
/* order: a removal not kept (called now) tombstones whatever generation
 * the store holds; a kept one (rem == 2) may be dropped */
#define CODEDIRECT(rem) ((rem) == 1)
#ifdef CODE
#define LEADREFRESH
/* the code on main: no amendment; a write goes to the store when it
 * is up, whatever is kept; a write over what it cannot read is withheld */
#define LEADAT
#define LEADAFTER
#endif
#if defined(LEADREFRESH) || defined(CODE)
#define REFRESHGEN(refresh) 0
#else
#define REFRESHGEN(refresh) (refresh)
#endif
#ifdef NOREFRESH
#define REFRESHRULE(refresh) 0
#else
#define REFRESHRULE(refresh) (refresh)
#endif
#ifdef ITEM4
#define evicted(r) vEpoch[r]++
#else
#define evicted(r) skip
#endif

/* present: view.set of a record into replica r's view: aliveAt as set()
 * keeps it (ITEM1). */
inline present(r, rem, tok, gen, synced) {
	if
	:: !(rem) -> setAliveAt(r, 1)
	:: rem && !vHas[r] -> setAliveAt(r, 0)
	:: else
	fi;
	vHas[r] = 1; vRem[r] = rem; vTok[r] = tok; vGen[r] = gen; vSynced[r] = synced
}

/* replace: read.go Replace of the partition by replica r's client. */
inline replace(r) {
	if
	:: vHas[r] && vSynced[r] ->
		/* view.current: held at the store's current version (view.use) */
		if :: !vRem[r] -> setAliveAt(r, 1) :: else fi
	:: else ->
		if
		:: qn[r] > 0 ->
			/* Replace: pendingFor: the last kept write (a removal: empty, removed) */
			i = r*NQ + qn[r] - 1;
			if
			:: qRem[i] -> present(r, 1, 0, 0, 0)
			:: else -> present(r, 0, qOurs[i], qGen[i], 0)
			fi;
			i = 0
		:: qn[r] == 0 && down[r] ->
			skip /* Replace: isDown: MSAL keeps what it holds; the probe fails */
		:: qn[r] == 0 && !down[r] ->
			/* Replace: loadValue, decode, present */
			if
			:: !sHas -> present(r, 0, 0, 0, 1) /* a miss */
			:: sHas && sNew && !hasNew[r] -> present(r, 0, 0, 0, 1) /* does not open: a miss (item 11) */
			:: sHas && !(sNew && !hasNew[r]) && sRem -> present(r, 1, 0, sGen, 1)
			:: sHas && !(sNew && !hasNew[r]) && !sRem -> present(r, 0, sTok, sGen, 1)
			fi
		fi
	fi
}

/* logRead: the request's read log after a Replace (order.go readLog.read
 * for its ctx.Done(), kept apart from the working set so eviction keeps
 * it; began is its first read). With ITEM4 it lives in the part: an
 * eviction since the last read forgets it. */
inline logRead(r) {
#ifdef ITEM4
	if
	:: epoch != vEpoch[r] -> began = now; alive = 0; refresh = 0; epoch = vEpoch[r]
	:: else
	fi;
#endif
	if :: began == 0 -> began = now :: else fi;
	if :: alive -> refresh = 1 :: else fi; /* read alive before this read: a refresh (reqRead.refresh) */
	if :: vHas[r] && !vRem[r] && vTok[r] != 0 -> alive = 1 :: else fi
}

/* keep: write.go keep: file a write for the write-back. */
inline keep(r, rem, began, alive, base, ours, gen) {
	atomic {
#ifdef ITEM3
		/* today: one kept write, merged with the one kept before */
		i = r*NQ;
		if
		:: qn[r] == 1 && !qRem[i] && !(rem) ->
			/* both changes, against the older base */
			qOurs[i] = merge(base, ours, qOurs[i]);
			qAlive[i] = qAlive[i] || alive
		:: qn[r] == 1 && qRem[i] && !(rem) ->
			/* signed out, then in again: a write based on nothing */
			qRem[i] = 0; qBase[i] = 0; qGen[i] = 0;
			qOurs[i] = merge(base, ours, 0);
			qBegan[i] = began; qAlive[i] = alive
		:: else ->
			qn[r] = 1; qRem[i] = rem; qBegan[i] = began; qAlive[i] = alive;
			qBase[i] = base; qOurs[i] = ours; qGen[i] = gen
		fi;
		qTaken[r] = 0 /* pending[key] is another write now */
#else
		/* fixed: an ordered queue (keptWrites.add); a removal supersedes
		 * what was kept before it */
		if :: rem -> qn[r] = 0; qTaken[r] = 0 :: else fi;
		assert(qn[r] < NQ);
		if
		:: rem -> printf("   r%d: keeps the sign-out of %d\n", r, began)
		:: else -> printf("   r%d: keeps the write begun at %d (tokens %d)\n", r, began, ours)
		fi;
		i = r*NQ + qn[r];
		qRem[i] = rem; qBegan[i] = began; qAlive[i] = alive;
		qBase[i] = base; qOurs[i] = ours; qGen[i] = gen;
		qn[r]++
#endif
		;
		i = 0
	}
}

/* tombstone: the store takes replica r's removal at time t. A sign-out is
 * stored: every write exported on the other replica before now was made
 * without seeing it. */
inline tombstone(r, t) {
	if :: t > landedOut -> landedOut = t :: else fi;
	sHas = 1; sRem = 1; newGen(); sAt = t; sAfter = 0; sTok = 0;
	i = 0;
	do
	:: i < NT -> if :: tokOn[i] == other(r) -> excused = excused | (exported & bit(i)) :: else fi; i++
	:: else -> break
	od;
	i = 0
}

/* writeStore: write.go writeStore with order.go order (rule 2), one
 * attempt that either takes effect
 * (its compare-and-set succeeded) or fails (the store is out for r); res is
 * the outcome. */
inline writeStore(r, rem, began, refresh, base, ours, gen, res) {
	atomic {
		if
		:: down[r] -> res = FAILED; printf("   r%d: store out\n", r)
		:: !down[r] && sHas && sNew && !hasNew[r] ->
			printf("   r%d: cannot open the stored blob\n", r);
#ifdef ITEM10
			/* today: "overwriting a stored partition that does not decrypt" */
			overwritesUnread = 1;
			assert(!overwritesUnread)
#else
#ifdef CODE
			res = DROPPED; excused = excused | ours /* withheld: not stored, not kept (counted, warned) */
#else
			res = FAILED /* cannot read it: kept until it can (never overwritten) */
#endif
#endif
		:: else ->
			res = WRITTEN;
			if
#ifdef ITEM2
			/* today's writeStore */
			:: rem -> tombstone(r, now) /* At: when written */
			:: !(rem) && sHas && gen != 0 && sGen != gen -> res = DROPPED
			:: else ->
				if
				:: sHas && sRem -> sAfter = sAt; sAt = now; sRem = 0; sTok = merge(base, ours, 0)
				:: sHas && !sRem -> sTok = merge(base, ours, sTok)
				:: !sHas -> sHas = 1; newGen(); sAt = now; sTok = merge(base, ours, 0)
				fi
#else
			/* fixed: rule 2 against what the store holds */
			:: rem && !sHas -> tombstone(r, began)
			:: rem && sHas && sRem ->
				/* keep the later of the two tombstones */
				if :: began > sAt -> tombstone(r, began) :: else -> tombstone(r, sAt) fi
			:: rem && sHas && !sRem && sAt > began && CODEDIRECT(rem) ->
				/* order: called now: whatever the store holds is signed out */
				tombstone(r, sAt + 1)
			:: rem && sHas && !sRem && sAt > began && !CODEDIRECT(rem) ->
				/* a sign-in after it: the removal is dropped */
#ifndef LEADAFTER
				/* and what began before it cannot be merged any more */
				if
				:: began > sAfter -> sAfter = began; printf("   r%d: the store's generation follows the removal at %d\n", r, began)
				:: else
				fi;
#endif
				res = DROPPED
			:: rem && sHas && !sRem && sAt <= began -> tombstone(r, began)
			:: !(rem) && !sHas -> sHas = 1; newGen(); sAt = began; sAfter = 0; sTok = merge(base, ours, 0)
#ifndef NOREFRESH
			:: !(rem) && sHas && sRem && began > sAt && refresh ->
				res = DROPPED /* a refresh never starts a generation over a sign-out: only a sign-in */
#endif
			:: !(rem) && sHas && sRem && began > sAt && !REFRESHRULE(refresh) ->
				/* a new generation after the removal: what MSAL held from before is not brought back */
				newGen(); sAfter = sAt; sAt = began; sRem = 0; sTok = merge(base, ours, 0)
			:: !(rem) && sHas && sRem && began <= sAt -> res = DROPPED
#ifndef LEADREFRESH
			:: !(rem) && sHas && !sRem && began > sAfter && refresh && began < sAt ->
				res = DROPPED /* a refresh begun before this generation refreshes older tokens */
#endif
			:: !(rem) && sHas && !sRem && began > sAfter && !(REFRESHGEN(refresh) && began < sAt) ->
				sTok = merge(base, ours, sTok);
#ifndef LEADAT
				/* the generation began no later than any write merged into it */
				if :: began < sAt -> sAt = began :: else fi
#endif
			:: !(rem) && sHas && !sRem && began <= sAfter -> res = DROPPED
#endif
			fi;
			if
			:: res == WRITTEN -> sNew = hasNew[r]; ngen = sGen; changed();
				printf("   r%d: stored: removed %d gen %d at %d after %d tokens %d\n", r, sRem, sGen, sAt, sAfter, sTok)
			:: else -> printf("   r%d: dropped by the store (began %d; store: removed %d at %d after %d)\n", r, began, sRem, sAt, sAfter)
			fi
		fi;
		/* or the store did it and the answer is lost: an outage begins
		 * (failed), and the write is kept though it was done */
		if
		:: res != FAILED && outs[r] < OUTAGES ->
			down[r] = 1; outs[r]++; res = FAILED; printf("   r%d: the answer is lost; the store is out\n", r)
		:: else
		fi
	}
}

/* changes: write.go Export's view.changes for request me on replica r,
 * after MSAL wrote its token into what it holds (rule 1); res: DROPPED or
 * WRITTEN (to write). Inside the caller's locked section. */
inline changes(r, me) {
	base = 0; gen = 0;
	if :: vHas[r] -> base = vTok[r]; gen = vGen[r] :: else fi;
	ours = base | bit(me);
	exported = exported | bit(me); /* Export returns nil */
	if
#ifdef ITEM1
	:: vHas[r] && vRem[r] && vAliveAt[r] -> res = DROPPED /* today: read alive within inFlight */
#else
	:: vHas[r] && vRem[r] && alive -> res = DROPPED /* rule 1: readLog.request alive, part removed */
#endif
	:: else -> res = WRITTEN
	fi;
	if
	:: res == DROPPED -> vHas[r] = 1; vTok[r] = ours; vSynced[r] = 0; /* pendingWrite.drop; write: v.stale */
		printf("t=%d r%d: request %d: dropped (read alive, now removed)\n", now, r, me)
	:: else -> vHas[r] = 1; vRem[r] = 0; vTok[r] = ours; setAliveAt(r, 1); vSynced[r] = 0
	fi
}

/* write: write.go write for request me: kept while the store is out (or
 * behind writes kept before), else writeStore, kept if it fails. */
inline write(r, me) {
	if
	:: res == DROPPED -> atomic { locked[r] = 0; running-- }
	:: else ->
		atomic {
			if
#ifndef CODE
			:: qn[r] > 0 -> res = FAILED /* behind the writes kept before */
#else
			:: qn[r] > 0 && down[r] -> res = FAILED
			:: qn[r] > 0 && !down[r] -> writeStore(r, 0, began, refresh, base, ours, gen, res)
#endif
			:: else -> writeStore(r, 0, began, refresh, base, ours, gen, res) /* FAILED if down: isDown */
			fi
		}
		atomic {
			if
			:: res == FAILED -> keep(r, 0, began, refresh, base, ours, gen)
			:: res == WRITTEN -> if :: vHas[r] && vTok[r] == ours -> vGen[r] = ngen :: else fi /* view.written */
			:: res == DROPPED -> skip /* view.stale: done by changed() */
			fi;
			locked[r] = 0; running--
		}
	fi
}

/* Refresh: AcquireTokenSilent that refreshes (base.go), request me. */
proctype Refresh(byte r; byte me) {
	byte i, began, base, ours, gen, ngen, res, epoch;
	bool alive, refresh;
	atomic {
		/* Replace at the start of the call (under the client's read lock) */
		!locked[r]; timed(); replace(r); logRead(r);
		if
		:: !alive -> running--; printf("t=%d r%d: request %d: no tokens to refresh\n", now, r, me); goto end /* the app asks the user to sign in */
		:: else
		fi;
		tokStart[me] = now; tokOn[me] = r;
		printf("t=%d r%d: request %d begins a refresh (read alive)\n", now, r, me);
		if :: outsCalled > 0 -> excused = excused | bit(me) :: else fi; /* overlaps a sign-out */
		/* the session it continues: the newest it holds (a sign-in's
		 * refresh token replaces the one before it in MSAL's memory) */
		tokSess[me] = 0; i = 0;
		do
		:: i < NT -> if :: (vTok[r] & bit(i)) && tokSess[i] > tokSess[me] -> tokSess[me] = tokSess[i] :: else fi; i++
		:: else -> break
		od;
		i = 0;
		if :: tokSess[me] < landedOut -> stale = stale | bit(me) :: else fi
	}
	/* the HTTP refresh: anything happens meanwhile */
	atomic {
		/* AuthResultFromToken under the client's write lock: Replace,
		 * manager.Write, then Export's view.changes */
		!locked[r]; locked[r] = 1;
		timed(); replace(r); logRead(r);
		printf("t=%d r%d: request %d (refresh begun at %d) writes its tokens\n", now, r, me, tokStart[me]);
		changes(r, me)
	}
	write(r, me);
end:
	skip
}

/* SignIn: AcquireTokenByAuthCode (base.go AuthResultFromToken): one
 * Replace right before its Export, under the client's write lock. */
proctype SignIn(byte r; byte me) {
	byte i, began, base, ours, gen, ngen, res, epoch;
	bool alive, refresh;
	atomic {
		!locked[r]; locked[r] = 1;
		timed(); replace(r); logRead(r);
		tokStart[me] = now; tokSess[me] = now; tokOn[me] = r;
		if :: outsCalled > 0 -> excused = excused | bit(me) :: else fi; /* overlaps a sign-out */
		printf("t=%d r%d: request %d signs in (read alive: %d)\n", now, r, me, alive);
		changes(r, me)
	}
	write(r, me)
}

/* SignOut: write.go RemovePartition on replica r. */
proctype SignOut(byte r) {
	byte i, t, res, ngen;
	atomic {
		timed(); t = now; lastOut = t; outsCalled++;
		printf("t=%d r%d: sign-out\n", now, r);
		/* forget (the layer: every view's copy is stale), and the writes
		 * kept for it are superseded (delete(c.pending), keptWrites.add) */
		qn[r] = 0; qTaken[r] = 0; vSynced[r] = 0
	}
	writeStore(r, 1, t, 0, 0, 0, 0, res); /* FAILED if down: isDown */
	atomic {
		if
		:: res == FAILED -> keep(r, 1, t, 0, 0, 0, 0) /* returns nil (today: ErrUnavailable) */
		:: else -> vSynced[r] = 0 /* forget again */
		fi;
		outsCalled--;
		running--
	}
}

/* WriteBack: outage.go writeBack/flush on replica r: take the oldest kept
 * write (firstKept), write it, and remove it if it is still the first kept
 * (a removal kept meanwhile replaced the queue). */
proctype WriteBack(byte r) {
	byte i, rem, began, base, ours, gen, ngen, res;
	bool alive, refresh;
	do
	:: atomic {
		!down[r] && qn[r] > 0 && !qTaken[r] ->
		i = r*NQ; qTaken[r] = 1;
		rem = qRem[i]; began = qBegan[i]; refresh = qAlive[i];
		if :: rem -> rem = 2 :: else fi; /* a kept removal (pendingWrite.kept) */
		base = qBase[i]; ours = qOurs[i]; gen = qGen[i];
		if
		:: rem -> printf("   r%d: write-back takes the sign-out of %d\n", r, began)
		:: else -> printf("   r%d: write-back takes the write begun at %d (tokens %d)\n", r, began, ours)
		fi;
		i = 0
	   }
	   writeStore(r, rem, began, refresh, base, ours, gen, res);
	   atomic {
		if
		:: res != FAILED && qTaken[r] ->
			/* flush: delete pending if it is still the one taken */
			i = r*NQ;
			do
			:: i + 1 < r*NQ + qn[r] ->
				qRem[i] = qRem[i+1]; qBegan[i] = qBegan[i+1]; qAlive[i] = qAlive[i+1];
				qBase[i] = qBase[i+1]; qOurs[i] = qOurs[i+1]; qGen[i] = qGen[i+1]; i++
			:: else -> break
			od;
			qRem[i] = 0; qBegan[i] = 0; qAlive[i] = 0; qBase[i] = 0; qOurs[i] = 0; qGen[i] = 0;
			qn[r]--
		:: else
		fi;
		qTaken[r] = 0;
		vSynced[r] = 0; /* a client handed the kept write reads it again */
		if :: res == WRITTEN && vHas[r] -> vGen[r] = ngen :: else fi;
		ngen = 0;
		rem = 0; began = 0; refresh = 0; base = 0; ours = 0; gen = 0; res = 0; i = 0
	   }
	:: atomic { running == 0 && !down[0] && !down[1] && qn[r] == 0 -> break }
	od
}

/* Env: outages, evictions and the key deploy, at any step. */
proctype Env() {
	do
	:: atomic { outs[0] < OUTAGES && !down[0] -> down[0] = 1; outs[0]++; printf("   r0: the store is out\n") }
	:: atomic { outs[1] < OUTAGES && !down[1] -> down[1] = 1; outs[1]++; printf("   r1: the store is out\n") }
	:: atomic { down[0] -> down[0] = 0; vSynced[0] = 0; printf("   r0: the store is back\n") } /* recover: every view reads again */
	:: atomic { down[1] -> down[1] = 0; vSynced[1] = 0; printf("   r1: the store is back\n") }
	:: atomic { evicts[0] < EVICTS0 && vHas[0] && !locked[0] -> /* view.evict */
		vHas[0] = 0; vRem[0] = 0; vTok[0] = 0; vGen[0] = 0; vSynced[0] = 0; vAliveAt[0] = 0; evicted(0); evicts[0]++; printf("   r0: evicted from the working set\n") }
	:: atomic { evicts[1] < EVICTS1 && vHas[1] && !locked[1] ->
		vHas[1] = 0; vRem[1] = 0; vTok[1] = 0; vGen[1] = 0; vSynced[1] = 0; vAliveAt[1] = 0; evicted(1); evicts[1]++; printf("   r1: evicted from the working set\n") }
	:: atomic { !hasNew[0] -> hasNew[0] = 1; printf("   r0: deployed with the new key\n") } /* replica 0's deploy: [new, old] */
	:: atomic { running == 0 && !down[0] && !down[1] && hasNew[0] &&
		qn[0] == 0 && qn[1] == 0 && !qTaken[0] && !qTaken[1] -> break }
	od
}

init {
	byte i, j;
	bool ok;
	atomic {
		/* replica 0's client holds session 0, read alive */
		vHas[0] = 1; vTok[0] = 1; vGen[0] = 1; vSynced[0] = 1; setAliveAt(0, 1);
		hasNew[0] = 1; hasNew[1] = 1;
#ifdef ROTATION
		hasNew[0] = 0; sNew = 0;
#endif
#if defined(SCENARIO_A) || !(defined(SCENARIO_B) || defined(SCENARIO_C) || defined(SCENARIO_D))
		/* a refresh and a sign-in on replica 0, a sign-out on replica 1 */
		running = 3;
		run Refresh(0, 1); run SignIn(0, 2); run SignOut(1);
#elif defined(SCENARIO_B)
		/* sign-out and sign-in on one replica; a sign-in on the other */
		running = 3;
		run SignOut(0); run SignIn(0, 1); run SignIn(1, 2);
#elif defined(SCENARIO_C)
		/* signed out at time 1; a sign-in on each replica, a sign-out on one */
		sRem = 1; sTok = 0; sAt = 1; lastOut = 1; now = 1;
		vHas[0] = 0; vTok[0] = 0; vGen[0] = 0; vSynced[0] = 0; setAliveAt(0, 0);
		running = 3;
		run SignIn(0, 1); run SignOut(1); run SignIn(1, 2);
#elif defined(SCENARIO_D)
		/* a sign-in on one replica, a sign-out on each */
		running = 3;
		run SignIn(0, 1); run SignOut(1); run SignOut(0);
#endif
		run Env(); run WriteBack(0); run WriteBack(1)
	}
	(_nr_pr == 1);
	printf("end: store: removed %d gen %d at %d after %d tokens %d; exported %d; last sign-out at %d\n", sRem, sGen, sAt, sAfter, sTok, exported, lastOut);
	/* the end: every request ended, the store back, every kept write written */
	assert(qn[0] == 0 && qn[1] == 0);
	i = 0;
	do
	:: i < NT ->
		if
		:: sHas && !sRem && (sTok & bit(i)) ->
			signOutUndone = lastOut > tokStart[i] || (stale & bit(i));
			assert(!signOutUndone)
		:: else
		fi;
		if
		:: (exported & bit(i)) && !(sHas && !sRem && (sTok & bit(i))) ->
			/* a sign-out it could not see removed its session */
			ok = 0; j = 0;
			do
			:: j < NT -> if :: (excused & bit(j)) && tokSess[j] == tokSess[i] -> ok = 1 :: else fi; j++
			:: else -> break
			od;
			keptWriteLost = !(tokSess[i] < lastOut || ok);
			assert(!keptWriteLost)
		:: else
		fi;
		i++
	:: else -> break
	od
}
