/* pg_log.c - leveled log lines, text or JSON, one write(2) each. */
#include "pg_log.h"
#include "pg_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int pg_log_level = PG_LOG_INFO;
int pg_log_json = 0;
const char *pg_log_node = NULL;

static const char *const names[] = { "debug", "info", "warn", "error" };

int pg_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *pg_log_level_name(int lvl)
{
    if (lvl < PG_LOG_DEBUG || lvl > PG_LOG_ERROR)
        return "?";
    return names[lvl];
}

static void timestamp(char out[32])
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void pg_log_emit(int lvl, const char *fmt, ...)
{
    /* A stack buffer keeps logging allocation-free for the common case; a
     * longer message is cut rather than allocated, because the log is also
     * what runs when memory is short. */
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    /* A trailing newline from the caller would double up in text mode. */
    while (mlen > 0 && (msg[mlen - 1] == '\n' || msg[mlen - 1] == '\r'))
        msg[--mlen] = '\0';

    char ts[32];
    timestamp(ts);
    pg_buf_t b = PG_BUF_INIT;
    int rc;
    if (pg_log_json) {
        rc = pg_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, pg_log_level_name(lvl));
        if (rc == 0 && pg_log_node) {
            rc = pg_buf_puts(&b, ",\"node\":");
            if (rc == 0)
                rc = pg_buf_json_str(&b, pg_log_node, strlen(pg_log_node));
        }
        if (rc == 0)
            rc = pg_buf_puts(&b, ",\"msg\":");
        if (rc == 0)
            rc = pg_buf_json_str(&b, msg, mlen);
        if (rc == 0)
            rc = pg_buf_puts(&b, "}\n");
    } else {
        rc = pg_buf_printf(&b, "%s %s ", ts, pg_log_level_name(lvl));
        if (rc == 0 && pg_log_node)
            rc = pg_buf_printf(&b, "node=%s ", pg_log_node);
        if (rc == 0)
            rc = pg_buf_append(&b, msg, mlen);
        if (rc == 0)
            rc = pg_buf_puts(&b, "\n");
    }
    if (rc == 0) {
        const char *p = b.data;
        size_t left = b.len;
        while (left > 0) {
            ssize_t w = write(STDERR_FILENO, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            p += w;
            left -= (size_t)w;
        }
    }
    pg_buf_free(&b);
}
