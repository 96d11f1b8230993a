/* The one way every test program runs its suite: exit status 0 only if every check passed. */
#pragma once
#include <check.h>

static inline int mp_check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
