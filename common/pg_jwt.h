/* pg_jwt.h - client token verification (HS256 / RS256 / ES256) on libjwt,
 * against a set of any number of keys (SPEC §7 "Keys rotate without refusals"). */
#ifndef PG_JWT_H
#define PG_JWT_H

#include <stddef.h>
#include <stdint.h>
#include "pg_util.h"

typedef struct pg_identity {
    char         *sub;       /* user id from "sub"; NULL = anonymous */
    pg_strlist_t  channels;  /* names/globs from the "channels" claim */
    int64_t       exp;       /* 0 = no expiry */
    int64_t       iat;       /* whole seconds of "iat"; 0 = absent, not a number, or <= 0 */
    char         *info;      /* the "info" claim as compact JSON; NULL = absent or null */
} pg_identity_t;

/* A set of verification keys. Built with pg_jwt_keys_new, or with
 * pg_jwt_keys_create and the pg_jwt_keys_add_* calls; after that it is only
 * read, so one set may serve every verification until it is freed (a reload
 * builds a new set and swaps it in). */
typedef struct pg_jwt_keys pg_jwt_keys_t;

/* Keys to verify with: an HS256 secret (NULL = none) and/or a PEM public key
 * (NULL = none; an RSA key verifies RS256, an EC P-256 key ES256). Returns NULL
 * with err set if the PEM does not parse or is neither RSA nor EC P-256, or if
 * both are NULL. err names no option: the caller prefixes it ("--jwt-public-key: "). */
pg_jwt_keys_t *pg_jwt_keys_new(const char *hs256_secret, const char *pem, size_t pem_len,
                               char *err, size_t errlen);
/* An empty set (verifies nothing until keys are added). NULL on out-of-memory. */
pg_jwt_keys_t *pg_jwt_keys_create(void);
/* Add an HS256 secret of len bytes (len > 0; may hold any byte), named kid
 * (NULL = no kid). Returns 0, or -1 with err set and the set unchanged. */
int pg_jwt_keys_add_hs256(pg_jwt_keys_t *k, const void *secret, size_t len, const char *kid,
                          char *err, size_t errlen);
/* Add the first PEM public key (BEGIN PUBLIC KEY) in pem[0..len): RSA for
 * RS256 or EC P-256 for ES256, named kid (NULL = none). Returns 0, or -1 with
 * err set and the set unchanged. */
int pg_jwt_keys_add_pem(pg_jwt_keys_t *k, const char *pem, size_t len, const char *kid,
                        char *err, size_t errlen);
/* Add every signing key of a JWKS document (RFC 7517 {"keys":[...]}, or one
 * bare JWK): kty "RSA" (n, e) for RS256, "EC" crv "P-256" (x, y) for ES256,
 * "oct" (k) for HS256; "kid" optional; "alg", if present, must be that alg;
 * keys whose "use" is not "sig" are skipped. Any other key, or no signing
 * key at all, is an error. Returns 0, or -1 with err (naming the key by its
 * position and kid, never a key's value) and the set unchanged. */
int pg_jwt_keys_add_jwks(pg_jwt_keys_t *k, const char *json, size_t len, char *err, size_t errlen);
/* How many keys the set holds (0 for NULL). */
size_t pg_jwt_keys_count(const pg_jwt_keys_t *k);
/* NULL-safe. Wipes the secrets before freeing them. */
void pg_jwt_keys_free(pg_jwt_keys_t *k);

/* Verify token at time now (unix seconds). The header's alg must be HS256,
 * RS256 or ES256 (never "none"). A token whose header has a "kid" is checked
 * only against the keys with that kid ("unknown key id" when there is none);
 * without a kid, every key of the token's alg is tried. The signature must
 * verify; exp (if present) must be > now and nbf (if present) <= now; "sub"
 * must be a string that makes a valid channel "user:<sub>"; "channels", if
 * present, must be an array of strings. Returns 0 and fills out (caller
 * frees it with pg_identity_free), or -1 with out empty and a reason in err
 * that never contains the token or a key. */
int pg_jwt_verify(const pg_jwt_keys_t *k, const char *token, int64_t now,
                  pg_identity_t *out, char *err, size_t errlen);
/* Free what an identity owns and empty it. NULL-safe; idempotent. */
void pg_identity_free(pg_identity_t *id);

#endif
