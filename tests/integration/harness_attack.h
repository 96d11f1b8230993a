/* The frame of one attack in the adversarial suite: the attacked daemon's memory is measured
 * (its peak RSS reset before, VmHWM read after, from /proc/PID) and an honest customer pays
 * throughout (harness_honest.h); at the end the test fails unless the customer was served and
 * the peak stayed within a bound above the RSS before the attack. Each attack prints one line
 * "attack NAME on DAEMON: RSS before .. kB, peak .. kB, after .. kB". */
#pragma once
#include <stdint.h>

#include "harness_honest.h"

/* The peak RSS one attack may add. ASan's redzones, shadow and quarantine triple it. */
#if defined(__SANITIZE_ADDRESS__)
#define ATTACK_MEM_SLACK_KB (96 * 1024)
#else
#define ATTACK_MEM_SLACK_KB (32 * 1024)
#endif

struct attack {
	const struct net *net;
	const char *daemon, *name;
	struct honest *honest;
	int64_t rss_before_kb;
	int64_t slack_kb; /* the bound above rss_before_kb: ATTACK_MEM_SLACK_KB unless raised */
};

void attack_begin(struct attack *a, const struct net *n, const char *daemon, const char *name,
		  struct honest *honest);
/* Stop the honest customer (it must have been served), check the daemon's peak RSS. */
void attack_end(struct attack *a);
