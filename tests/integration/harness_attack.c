#include "harness_attack.h"

#include <check.h>
#include <stdio.h>

#include "harness_net.h"

void attack_begin(struct attack *a, const struct net *n, const char *daemon, const char *name,
		  struct honest *honest)
{
	*a = (struct attack){.net = n,
			     .daemon = daemon,
			     .name = name,
			     .honest = honest,
			     .slack_kb = ATTACK_MEM_SLACK_KB};
	if (!daemon_peak_reset(n, daemon))
		printf("attack %s: cannot reset %s's peak RSS; VmHWM is the peak since its start\n",
		       name, daemon);
	a->rss_before_kb = daemon_mem_kb(n, daemon, "VmRSS");
	honest_start(honest);
}

void attack_end(struct attack *a)
{
	char during[160];
	snprintf(during, sizeof(during), "attack %s on %s", a->name, a->daemon);
	honest_stop(a->honest, during);
	int64_t peak = daemon_mem_kb(a->net, a->daemon, "VmHWM");
	int64_t after = daemon_mem_kb(a->net, a->daemon, "VmRSS");
	printf("%s: RSS before %lld kB, peak %lld kB, after %lld kB\n", during,
	       (long long)a->rss_before_kb, (long long)peak, (long long)after);
	ck_assert_msg(peak - a->rss_before_kb < a->slack_kb,
		      "%s: peak RSS %lld kB, %lld kB above the RSS before (bound %lld kB)", during,
		      (long long)peak, (long long)(peak - a->rss_before_kb),
		      (long long)a->slack_kb);
}
