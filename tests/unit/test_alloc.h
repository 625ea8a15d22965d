/* test_alloc.h - force-included into the pg_common_tm build of the common sources:
 * every allocation goes through cmocka (leak and double-free checks per
 * test) and pg_test_fail_after can make the Nth one fail. Every system
 * header the sources use is included first so the macros below never
 * rewrite a libc prototype. */
#ifndef PG_TEST_ALLOC_H
#define PG_TEST_ALLOC_H

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* < 0: never fail. Otherwise the allocation after this many more fails
 * (0 = the very next one), then it goes back to -1. */
extern long pg_test_fail_after;
/* Allocations that failed on purpose since the last reset. */
extern long pg_test_failed;
/* Successful malloc/calloc calls so far (realloc not counted). */
extern long pg_test_allocs;

void *pg_test_malloc(size_t n, const char *file, int line);
void *pg_test_calloc(size_t k, size_t n, const char *file, int line);
void *pg_test_realloc(void *p, size_t n, const char *file, int line);
char *pg_test_strdup(const char *s, const char *file, int line);
char *pg_test_strndup(const char *s, size_t n, const char *file, int line);
void pg_test_free(void *p, const char *file, int line);

#ifndef PG_TEST_ALLOC_IMPL
#define malloc(n) pg_test_malloc((n), __FILE__, __LINE__)
#define calloc(k, n) pg_test_calloc((k), (n), __FILE__, __LINE__)
#define realloc(p, n) pg_test_realloc((p), (n), __FILE__, __LINE__)
#define strdup(s) pg_test_strdup((s), __FILE__, __LINE__)
#define strndup(s, n) pg_test_strndup((s), (n), __FILE__, __LINE__)
#define free(p) pg_test_free((p), __FILE__, __LINE__)
#endif

#endif
