/* pg_log.h - leveled log lines to stderr, as text or one JSON object a line. */
#ifndef PG_LOG_H
#define PG_LOG_H

enum { PG_LOG_DEBUG = 0, PG_LOG_INFO = 1, PG_LOG_WARN = 2, PG_LOG_ERROR = 3 };

extern int pg_log_level;        /* lines below this level are not built at all */
extern int pg_log_json;         /* 0 text, 1 JSON */
extern const char *pg_log_node; /* node id put in every line; NULL = none */

/* "error" "warn" "info" "debug" -> PG_LOG_*, else -1. */
int pg_log_level_parse(const char *s);
const char *pg_log_level_name(int lvl);

/* Text: "2026-11-27T20:53:22.123Z info node=<id> <message>\n".
 * JSON: {"ts":"2026-...Z","level":"info","node":"<id>","msg":"<message>"}\n
 * with the message JSON-escaped. One write(2) per line, so lines from several
 * processes sharing stderr do not interleave. Never logs secrets: callers must
 * not pass tokens or keys. */
void pg_log_emit(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Arguments are not evaluated when the level is filtered out (redis serverLog). */
#define pg_log(lvl, ...) \
    do { if ((lvl) < pg_log_level) break; pg_log_emit((lvl), __VA_ARGS__); } while (0)

#endif
