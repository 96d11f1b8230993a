/* The chaos test's killer: SIGKILL one process of the network (a daemon, or PostgreSQL with
 * every backend of the cluster, as a machine crash would) from a thread after a delay, so that
 * it dies at a random moment of whatever the load does then; and bring it back afterwards
 * (`mpnet start`, or `pg-cluster start`: crash recovery).
 *
 *   IDLE --chaos_arm(victim, delay)--> ARMED --delay elapsed--> KILLED (victim dead, counted)
 *   ARMED|KILLED --chaos_revive--> IDLE (the thread joined; the victim running again)
 * The test marks the span of each load operation (busy): a kill sent while it is set landed
 * inside an operation and is counted as such. */
#pragma once
#include <pthread.h>
#include <stdbool.h>

#include "harness.h"

enum chaos_victim { V_BROKER, V_M1, V_M2, V_W1, V_W2, V_PG, V_COUNT };

struct chaos_killer {
	const struct net *net;
	pthread_t thread;
	bool armed;
	enum chaos_victim victim;
	unsigned delay_ms;
	bool killed;		 /* set by the thread once the victim is gone */
	unsigned kills[V_COUNT]; /* per victim, over the whole run */
	unsigned restarts[V_COUNT];
	bool busy;	 /* set by the test while a load operation runs */
	unsigned inside; /* kills sent while busy */
	unsigned inside_by[V_COUNT];
};

/* The victim's name as the network knows it ("broker", "m1", ..., "pg"). */
const char *chaos_victim_name(enum chaos_victim v);
/* Mark the start and the end of a load operation (see busy). */
void chaos_busy(struct chaos_killer *k, bool busy);
/* Start the thread that kills v after delay_ms. */
void chaos_arm(struct chaos_killer *k, enum chaos_victim v, unsigned delay_ms);
/* Wait for the armed kill (if any) and restart its victim; fails the test if it does not come
 * back. */
void chaos_revive(struct chaos_killer *k);
