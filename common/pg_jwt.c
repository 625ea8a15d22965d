/* pg_jwt.c - client tokens: HS256 / RS256 / ES256 on libjwt 1.10.2.
 *
 * libjwt trusts the token's own header to pick the algorithm, so handed an
 * RSA PEM it would happily check an "HS256" token with the PEM text as the
 * HMAC secret (the classic key-confusion attack), and "none" needs no key at
 * all. We therefore read the header ourselves first and choose the key by
 * the alg it names, refusing anything we were not configured for, and check
 * jwt_get_alg() again after the decode.
 *
 * ES256: libjwt 1.10.2 signs and verifies JOSE raw R||S signatures (64
 * bytes), which test_jwt checks with a token signed by OpenSSL directly, so
 * no verification of our own is needed. */
#include "pg_json.h"
#include "pg_jwt.h"

#define JWT_JSON_DEPTH 16   /* header and claims are shallow; a deep one is refused */
#include "pg_buf.h"
#include "pg_chan.h"

#include <json-c/json.h>
#include <jwt.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens ride in URLs and headers; 8 KiB is far past any sane token and
 * bounds the work an anonymous client can make us do. */
#define TOKEN_MAX 8192

struct pg_jwt_keys {
    char      *secret;     /* HS256; NULL = none */
    size_t     secret_len;
    char      *pem;        /* NUL-terminated PEM; NULL = none */
    size_t     pem_len;
    jwt_alg_t  pem_alg;    /* JWT_ALG_RS256, JWT_ALG_ES256 or JWT_ALG_NONE */
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

pg_jwt_keys_t *pg_jwt_keys_new(const char *hs256_secret, const char *pem, size_t pem_len,
                               char *err, size_t errlen)
{
    if (!hs256_secret && !pem) {
        set_err(err, errlen, "no JWT key configured");
        return NULL;
    }
    if (hs256_secret && !*hs256_secret) {
        set_err(err, errlen, "the HS256 secret is empty");
        return NULL;
    }
    pg_jwt_keys_t *k = calloc(1, sizeof *k);
    if (!k)
        goto nomem;
    k->pem_alg = JWT_ALG_NONE;
    if (hs256_secret) {
        k->secret_len = strlen(hs256_secret);
        if (!(k->secret = strdup(hs256_secret)))
            goto nomem;
    }
    if (pem) {
        if (pem_len > INT32_MAX) {
            set_err(err, errlen, "file too large");
            goto fail;
        }
        BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
        EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!pk) {
            set_err(err, errlen, "not a PEM public key (BEGIN PUBLIC KEY)");
            goto fail;
        }
        int type = EVP_PKEY_base_id(pk);
        if (type == EVP_PKEY_RSA) {
            k->pem_alg = JWT_ALG_RS256;
        } else if (type == EVP_PKEY_EC) {
            char group[64] = "";
            size_t glen = 0;
            if (EVP_PKEY_get_group_name(pk, group, sizeof group, &glen) == 1
                && (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
                k->pem_alg = JWT_ALG_ES256;
        }
        EVP_PKEY_free(pk);
        if (k->pem_alg == JWT_ALG_NONE) {
            set_err(err, errlen, "the key is neither RSA nor EC P-256");
            goto fail;
        }
        if (!(k->pem = malloc(pem_len + 1)))
            goto nomem;
        memcpy(k->pem, pem, pem_len);
        k->pem[pem_len] = '\0';
        k->pem_len = pem_len;
    }
    return k;
nomem:
    set_err(err, errlen, "out of memory");
fail:
    pg_jwt_keys_free(k);
    return NULL;
}

void pg_jwt_keys_free(pg_jwt_keys_t *k)
{
    if (!k)
        return;
    if (k->secret) {
        explicit_bzero(k->secret, k->secret_len);
        free(k->secret);
    }
    free(k->pem);
    free(k);
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* base64url without padding (RFC 7515 §2) into a NUL-terminated malloc'd
 * buffer. Returns NULL on a bad character or impossible length. */
static char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return NULL;
    char *out = malloc(n / 4 * 3 + 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}


/* The alg named by the token's header, or JWT_ALG_INVAL. */
static jwt_alg_t peek_alg(const char *token, size_t hlen, const char **why)
{
    size_t n;
    char *hdr = b64url_decode(token, hlen, &n);
    if (!hdr) {
        *why = "token header is not base64url";
        return JWT_ALG_INVAL;
    }
    json_object *o = pg_json_parse_object(hdr, n, JWT_JSON_DEPTH, NULL), *alg, *crit;
    free(hdr);
    if (!o) {
        *why = "token header is not a JSON object";
        return JWT_ALG_INVAL;
    }
    jwt_alg_t a = JWT_ALG_INVAL;
    *why = "token alg is not accepted (HS256, RS256 or ES256 only)";
    if (json_object_object_get_ex(o, "crit", &crit)) {
        /* RFC 7515 §4.1.11: extensions we do not understand must fail. */
        *why = "token header has crit extensions";
    } else if (json_object_object_get_ex(o, "alg", &alg) && json_object_is_type(alg, json_type_string)) {
        const char *s = json_object_get_string(alg);
        if (strcmp(s, "HS256") == 0)
            a = JWT_ALG_HS256;
        else if (strcmp(s, "RS256") == 0)
            a = JWT_ALG_RS256;
        else if (strcmp(s, "ES256") == 0)
            a = JWT_ALG_ES256;
    }
    json_object_put(o);
    return a;
}

/* A NumericDate (RFC 7519 §2): a JSON number, possibly with a fraction. */
static int numeric_date(json_object *v, double *out)
{
    if (json_object_is_type(v, json_type_int)) {
        *out = (double)json_object_get_int64(v);
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return isfinite(*out) ? 0 : -1;
    }
    return -1;
}

int pg_jwt_verify(const pg_jwt_keys_t *k, const char *token, int64_t now,
                  pg_identity_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!k) {
        set_err(err, errlen, "no JWT key configured");
        return -1;
    }
    if (!token || !*token) {
        set_err(err, errlen, "missing token");
        return -1;
    }
    size_t tlen = strnlen(token, TOKEN_MAX + 1);
    if (tlen > TOKEN_MAX) {
        set_err(err, errlen, "token too long");
        return -1;
    }
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || d1 == token || d2 == d1 + 1 || !d2[1]) {
        set_err(err, errlen, "malformed token (want header.payload.signature)");
        return -1;
    }
    const char *why;
    jwt_alg_t alg = peek_alg(token, (size_t)(d1 - token), &why);
    const unsigned char *key = NULL;
    size_t keylen = 0;
    if (alg == JWT_ALG_HS256 && k->secret) {
        key = (const unsigned char *)k->secret;
        keylen = k->secret_len;
    } else if (alg != JWT_ALG_INVAL && alg != JWT_ALG_HS256 && alg == k->pem_alg) {
        key = (const unsigned char *)k->pem;
        keylen = k->pem_len;
    } else if (alg != JWT_ALG_INVAL) {
        why = "token alg does not match the configured key";
    }
    if (!key) {
        set_err(err, errlen, why);
        return -1;
    }

    jwt_t *jwt = NULL;
    char *claims = NULL;
    json_object *c = NULL, *v;
    int rc = -1;
    if (jwt_decode(&jwt, token, key, (int)keylen) != 0 || !jwt) {
        set_err(err, errlen, "bad token signature (or malformed token)");
        goto out;
    }
    if (jwt_get_alg(jwt) != alg) {
        set_err(err, errlen, "token alg does not match the configured key");
        goto out;
    }
    claims = jwt_get_grants_json(jwt, NULL);
    if (!claims || !(c = pg_json_parse_object(claims, strlen(claims), JWT_JSON_DEPTH, NULL))) {
        set_err(err, errlen, "token claims are not a JSON object");
        goto out;
    }
    double t;
    if (json_object_object_get_ex(c, "exp", &v)) {
        if (numeric_date(v, &t) < 0) {
            set_err(err, errlen, "token exp is not a number");
            goto out;
        }
        if (t <= (double)now) {
            set_err(err, errlen, "token expired");
            goto out;
        }
        out->exp = t >= 9.2e18 ? INT64_MAX : (int64_t)t;
        if (out->exp == 0)
            out->exp = 1; /* keep 0 meaning "no expiry" */
    }
    if (json_object_object_get_ex(c, "nbf", &v)) {
        if (numeric_date(v, &t) < 0) {
            set_err(err, errlen, "token nbf is not a number");
            goto out;
        }
        if (t > (double)now) {
            set_err(err, errlen, "token not valid yet");
            goto out;
        }
    }
    if (!json_object_object_get_ex(c, "sub", &v) || !json_object_is_type(v, json_type_string)) {
        set_err(err, errlen, "token has no string sub");
        goto out;
    }
    size_t slen = (size_t)json_object_get_string_len(v);
    const char *sub = json_object_get_string(v);
    /* The user's channel is "user:<sub>", so sub must fit in it. */
    if (slen == 0 || slen > PG_CHAN_MAX - 5 || !pg_chan_valid(sub, slen)) {
        set_err(err, errlen, "token sub is not a valid user id (1..123 of A-Z a-z 0-9 _ - . : @)");
        goto out;
    }
    if (!(out->sub = strdup(sub))) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (json_object_object_get_ex(c, "channels", &v)) {
        if (!json_object_is_type(v, json_type_array)) {
            set_err(err, errlen, "token channels claim is not a list of strings");
            goto out;
        }
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            json_object *it = json_object_array_get_idx(v, i);
            if (!json_object_is_type(it, json_type_string)) {
                set_err(err, errlen, "token channels claim is not a list of strings");
                goto out;
            }
            if (pg_strlist_push(&out->channels, json_object_get_string(it)) < 0) {
                set_err(err, errlen, "out of memory");
                goto out;
            }
        }
    }
    rc = 0;
out:
    if (rc < 0)
        pg_identity_free(out);
    json_object_put(c);
    free(claims);
    if (jwt)
        jwt_free(jwt);
    return rc;
}

void pg_identity_free(pg_identity_t *id)
{
    if (!id)
        return;
    free(id->sub);
    id->sub = NULL;
    pg_strlist_free(&id->channels);
    id->exp = 0;
}
