/* The configuration loader (common/config.h, inih) with each daemon's real key table: the
 * first byte picks brokerd, merchantd or walletd, the rest is the file. Whatever loads must be
 * freed cleanly; whatever is refused must say where (file:line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker.h"
#include "fuzz.h"
#include "merchant.h"
#include "wallet.h"

/* One in-memory file for all inputs (made once: creating and closing a memfd per input cost
 * more than parsing it), rewritten for each input, and its /proc path. */
static int config_fd = -1;
static char config_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	config_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	if (config_fd < 0) {
		perror("fuzz_config: memfd_create");
		return -1;
	}
	snprintf(config_path, sizeof(config_path), "/proc/self/fd/%d", config_fd);
	return 0;
}

static void load(uint8_t which, const char *path)
{
	char err[512] = "";
	bool ok = false;
	switch (which % 3) {
	case 0: {
		struct broker_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		ok = broker_config_load(&cfg, path, err, sizeof(err));
		broker_config_free(&cfg);
		break;
	}
	case 1: {
		struct merchant_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		ok = merchant_config_load(&cfg, path, err, sizeof(err));
		merchant_config_free(&cfg);
		break;
	}
	default: {
		struct wallet_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		ok = wallet_config_load(&cfg, path, err, sizeof(err));
		wallet_config_free(&cfg);
		break;
	}
	}
	if (!ok && !err[0])
		abort(); /* a refusal must say why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (ftruncate(config_fd, 0) != 0 ||
	    pwrite(config_fd, data + 1, size - 1, 0) != (ssize_t)(size - 1)) {
		perror("fuzz_config: rewriting the in-memory file");
		abort(); /* the harness, not the loader: stop rather than test a stale file */
	}
	load(data[0], config_path);
	return 0;
}
