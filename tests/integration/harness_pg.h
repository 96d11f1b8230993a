/* The test network's PostgreSQL cluster under a running brokerd: stop and start it (the way
 * deploy/pg-cluster runs pg_ctl, as the cluster's owner), hold a libpq session on it (locks
 * that outlive one psql call), and reconfigure brokerd's [db] section. */
#pragma once
#include <libpq-fe.h>
#include <stdint.h>

#include "harness.h"

/* pg_ctl stop -m fast (waits until it is down); fails the test if it is still up. */
void pg_stop(const struct net *n);
/* Start the cluster again (same data, same socket); fails the test if it does not start. */
void pg_start(const struct net *n);
/* A blocking libpq connection to the network's database, as its owner. */
PGconn *pg_connect(const struct net *n);
/* Run sql (no parameters); fails the test unless it succeeds. Returns the result. */
PGresult *pg_exec_ok(PGconn *pg, const char *sql);

/* Append a [db] section with `lines` to brokerd's config and restart brokerd (same state; m1
 * is restarted around it). */
void broker_reconfigure_db(const struct net *n, const char *lines);
/* brokerd's process id (its pid file). */
long broker_pid(const struct net *n);
/* Milliseconds on the monotonic clock. */
uint64_t now_ms(void);
