/* pg_jwt.h - client token verification (HS256 / RS256 / ES256) on libjwt. */
#ifndef PG_JWT_H
#define PG_JWT_H

#include <stddef.h>
#include <stdint.h>
#include "pg_util.h"

typedef struct pg_identity {
    char         *sub;       /* user id from "sub"; NULL = anonymous */
    pg_strlist_t  channels;  /* names/globs from the "channels" claim */
    int64_t       exp;       /* 0 = no expiry */
} pg_identity_t;

typedef struct pg_jwt_keys pg_jwt_keys_t;

/* Keys to verify with: an HS256 secret (NULL = none) and/or a PEM public key
 * (NULL = none; an RSA key verifies RS256, an EC P-256 key ES256). Returns NULL
 * with err set if the PEM does not parse or is neither RSA nor EC P-256, or if
 * both are NULL. err names no option: the caller prefixes it ("--jwt-public-key: "). */
pg_jwt_keys_t *pg_jwt_keys_new(const char *hs256_secret, const char *pem, size_t pem_len,
                               char *err, size_t errlen);
void pg_jwt_keys_free(pg_jwt_keys_t *k);

/* Verify token at time now (unix seconds). The header's alg must be one the
 * keys allow (never "none"); the signature must verify; exp (if present)
 * must be > now and nbf (if present) <= now; "sub" must be a string that
 * makes a valid channel "user:<sub>"; "channels", if present, must be an
 * array of strings. Returns 0 and fills out (caller frees it with
 * pg_identity_free), or -1 with a reason in err that never contains the token. */
int pg_jwt_verify(const pg_jwt_keys_t *k, const char *token, int64_t now,
                  pg_identity_t *out, char *err, size_t errlen);
void pg_identity_free(pg_identity_t *id);

#endif
