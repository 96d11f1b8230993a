#include "harness_token.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void token_make(char *tmpl)
{
	ck_assert(mkdtemp(tmpl) != NULL);
	char path[512], cmd[1024];
	snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpl);
	FILE *f = fopen(path, "w");
	ck_assert(f != NULL);
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n", tmpl);
	fclose(f);
	setenv("SOFTHSM2_CONF", path, 1);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p '%s/tokens' && (umask 077; echo 1234 >'%s/pin') && "
		 "softhsm2-util --init-token --free --label micropay --pin 1234 --so-pin 5678 "
		 ">/dev/null",
		 tmpl, tmpl);
	ck_assert_msg(system(cmd) == 0, "softhsm2-util --init-token failed");
	snprintf(path, sizeof(path), "%s/pin", tmpl);
	setenv("MP_PKCS11_PIN_FILE", path, 1);
	setenv("MP_PKCS11_TOKEN", "micropay", 1);
	const char *module = "/usr/lib/softhsm/libsofthsm2.so";
	if (access(module, R_OK) != 0)
		module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
	setenv("MP_PKCS11_MODULE", module, 1);
}

void token_suppress_leaks(void)
{
	const char *src = getenv("MP_SOURCE_ROOT") ? getenv("MP_SOURCE_ROOT") : ".";
	char opts[1200];
	const char *asan = getenv("ASAN_OPTIONS");
	snprintf(opts, sizeof(opts), "%s%sfast_unwind_on_malloc=0", asan ? asan : "",
		 asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	const char *lsan = getenv("LSAN_OPTIONS");
	snprintf(opts, sizeof(opts), "%s%ssuppressions=%s/tests/lsan.supp", lsan ? lsan : "",
		 lsan && *lsan ? ":" : "", src);
	setenv("LSAN_OPTIONS", opts, 1);
}

void token_remove(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

bool token_holds_key(const char *config_path)
{
	char line[1200];
	snprintf(line, sizeof(line), "grep -q '^key_file = pkcs11:' '%s'", config_path);
	return system(line) == 0;
}
