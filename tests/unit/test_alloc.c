/* test_alloc.c - the cmocka-backed allocator of test_alloc.h. */
#define PG_TEST_ALLOC_IMPL
#include "test_alloc.h"

long pg_test_fail_after = -1;
long pg_test_failed = 0;
long pg_test_allocs = 0;

static int should_fail(void)
{
    if (pg_test_fail_after < 0)
        return 0;
    if (pg_test_fail_after-- == 0) {
        pg_test_fail_after = -1;
        pg_test_failed++;
        return 1;
    }
    return 0;
}

void *pg_test_malloc(size_t n, const char *file, int line)
{
    if (should_fail())
        return NULL;
    pg_test_allocs++;
    return _test_malloc(n, file, line);
}

void *pg_test_calloc(size_t k, size_t n, const char *file, int line)
{
    if (should_fail())
        return NULL;
    pg_test_allocs++;
    return _test_calloc(k, n, file, line);
}

void *pg_test_realloc(void *p, size_t n, const char *file, int line)
{
    /* realloc(p, 0) frees in cmocka; keep glibc's "fail leaves p" rule. */
    if (should_fail())
        return NULL;
    return _test_realloc(p, n, file, line);
}

char *pg_test_strndup(const char *s, size_t n, const char *file, int line)
{
    size_t len = strnlen(s, n);
    char *d = pg_test_malloc(len + 1, file, line);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *pg_test_strdup(const char *s, const char *file, int line)
{
    return pg_test_strndup(s, SIZE_MAX, file, line);
}

void pg_test_free(void *p, const char *file, int line)
{
    if (p)
        _test_free(p, file, line);
}
