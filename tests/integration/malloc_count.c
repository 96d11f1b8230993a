/* malloc_count: an LD_PRELOAD library for tests and measurements only (never linked into a
 * daemon). It counts every call of malloc, calloc, realloc, posix_memalign, aligned_alloc and
 * memalign by thread and by call site (the address malloc returns to), and, when
 * MP_MALLOC_COUNT_DIR is set, a reporter thread writes the counts every 20 ms to DIR/PID
 * (written whole, then renamed):
 *
 *   seq N
 *   TID OBJECT+0xOFFSET COUNT      (one line per thread and call site)
 *
 * OBJECT is the file name of the shared object or executable holding the call site (dladdr),
 * so a reader can tell the daemon's own code from libevent's, OpenSSL's or SQLite's. TID is
 * the kernel thread id (the main thread's is the PID). The reporter's own allocations are not
 * counted. Calls inside glibc (fopen's buffer, ...) do not pass through here and are not
 * counted. Calls whose site found no room in the table are counted in a line "lost N".
 *
 * Used by tests/integration/test_pay_allocs.c through deploy/mpnet's MP_DAEMON_WRAPPER. Not
 * built under sanitizers (they interpose malloc themselves). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define SLOTS	    16384
#define MAX_THREADS 255

/* key = thread index (8 bits) << 56 | call site (user space addresses fit in 56 bits). */
static _Atomic uint64_t keys[SLOTS];
static _Atomic uint64_t counts[SLOTS];
static _Atomic int tids[MAX_THREADS + 1];
static atomic_int next_thread = 1;
static __thread int thread_index; /* 0: not yet assigned */
static __thread int is_reporter;
static _Atomic uint64_t lost; /* calls whose site found no free slot */

static unsigned my_thread(void)
{
	if (!thread_index) {
		int i = atomic_fetch_add(&next_thread, 1);
		thread_index = i <= MAX_THREADS ? i : MAX_THREADS;
		atomic_store(&tids[thread_index], (int)syscall(SYS_gettid));
	}
	return (unsigned)thread_index;
}

static void count(void *site)
{
	if (is_reporter)
		return;
	uint64_t key = (uint64_t)my_thread() << 56 | ((uintptr_t)site & ((1ull << 56) - 1));
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	for (unsigned probe = 0; probe < 64; probe++) {
		unsigned s = (unsigned)((h >> 40) + probe) % SLOTS;
		uint64_t k = atomic_load(&keys[s]);
		if (k == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&keys[s], &zero, key) || zero == key) {
				atomic_fetch_add(&counts[s], 1);
				return;
			}
			k = zero;
		}
		if (k == key) {
			atomic_fetch_add(&counts[s], 1);
			return;
		}
	}
	atomic_fetch_add(&lost, 1); /* table full: counted, site unknown */
}

void *malloc(size_t n)
{
	count(__builtin_return_address(0));
	return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
	count(__builtin_return_address(0));
	return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
	count(__builtin_return_address(0));
	return __libc_realloc(p, n);
}

void *memalign(size_t a, size_t n)
{
	count(__builtin_return_address(0));
	return __libc_memalign(a, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	count(__builtin_return_address(0));
	return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
	count(__builtin_return_address(0));
	void *p = __libc_memalign(a, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

static void write_site(FILE *f, uint64_t key, uint64_t n)
{
	int tid = atomic_load(&tids[key >> 56]);
	void *site = (void *)(uintptr_t)(key & ((1ull << 56) - 1));
	Dl_info info;
	if (site && dladdr(site, &info) && info.dli_fname) {
		const char *base = strrchr(info.dli_fname, '/');
		fprintf(f, "%d %s+0x%lx %llu\n", tid, base ? base + 1 : info.dli_fname,
			(unsigned long)((uintptr_t)site - (uintptr_t)info.dli_fbase),
			(unsigned long long)n);
	} else {
		fprintf(f, "%d ?+0x%lx %llu\n", tid, (unsigned long)(uintptr_t)site,
			(unsigned long long)n);
	}
}

static void report(const char *dir, unsigned long long seq)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "seq %llu\nlost %llu\n", seq, (unsigned long long)atomic_load(&lost));
	for (unsigned s = 0; s < SLOTS; s++) {
		uint64_t key = atomic_load(&keys[s]);
		uint64_t n = atomic_load(&counts[s]);
		if (key && n)
			write_site(f, key, n);
	}
	if (fclose(f) == 0)
		rename(tmp, path);
}

static void *reporter(void *arg)
{
	is_reporter = 1;
	const char *dir = arg;
	for (unsigned long long seq = 1;; seq++) {
		report(dir, seq);
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

__attribute__((constructor)) static void start(void)
{
	const char *dir = getenv("MP_MALLOC_COUNT_DIR");
	pthread_t t;
	if (dir && *dir && pthread_create(&t, NULL, reporter, (void *)dir) == 0)
		pthread_detach(t);
}
