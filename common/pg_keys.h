/* pg_keys.h - the node's keyring: every JWT verification key and every API
 * key, read fresh from the options and key files (SPEC §7 "Keys rotate
 * without refusals"). Immutable once loaded: a SIGHUP loads a new keyring
 * and swaps it in only when the load succeeded, so a failed reload keeps
 * every old key. */
#ifndef PG_KEYS_H
#define PG_KEYS_H

#include <stddef.h>
#include "pg_jwt.h"
#include "pg_opt.h"

typedef struct pg_keys pg_keys_t;

/* Build a keyring from cfg: --jwt-secret and --api-key (comma lists; items
 * trimmed of spaces and tabs, empty items skipped), --jwt-secret-file and
 * --api-key-file (one key a line, exact bytes but a trailing \r; blank lines
 * and lines starting with # skipped), --jwt-public-key (comma list of files,
 * each a PEM public key, or a JWKS when its first non-blank byte is '{').
 * Every file is read now, not taken from cfg's copies. Returns 0 with *out
 * set (free with pg_keys_free), or -1 with *out NULL, nothing allocated and
 * one line in err naming the option and the file; err never holds a key.
 * A config with no key at all loads fine (pg_keys_jwt NULL, no API key). */
int pg_keys_load(const pg_config_t *cfg, pg_keys_t **out, char *err, size_t errlen);
/* NULL-safe. Wipes the API keys and the secrets before freeing them. */
void pg_keys_free(pg_keys_t *k);

/* The JWT key set, owned by k (valid until pg_keys_free); NULL when no JWT
 * key is configured, which means every connection is anonymous. */
const pg_jwt_keys_t *pg_keys_jwt(const pg_keys_t *k);
/* Number of JWT keys (0 when none). For the reload log line. */
size_t pg_keys_jwt_count(const pg_keys_t *k);

/* 1 when given[0..len) equals one of the API keys, else 0 (also when none is
 * configured, or given is NULL). Every key is compared, each in time that
 * depends only on the lengths (pg_secure_equal), so the time does not tell
 * which key matched or where a guess went wrong. */
int pg_keys_api_ok(const pg_keys_t *k, const char *given, size_t len);
/* 1 when at least one API key is configured (else /api/ answers 403). */
int pg_keys_has_api(const pg_keys_t *k);
/* Number of API keys (0 when none). For the reload log line. */
size_t pg_keys_api_count(const pg_keys_t *k);

#endif
