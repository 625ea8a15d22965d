/* pg_jwt.c - client tokens: HS256 / RS256 / ES256 on libjwt 1.10.2, against
 * a set of keys (SPEC §7: several secrets and public keys at once, so keys
 * rotate without refusing anybody).
 *
 * libjwt trusts the token's own header to pick the algorithm, so handed an
 * RSA PEM it would happily check an "HS256" token with the PEM text as the
 * HMAC secret (the classic key-confusion attack), and "none" needs no key at
 * all. We therefore read the header ourselves first, hand libjwt only keys
 * whose own alg is the one the header names, and check jwt_get_alg() again
 * after the decode.
 *
 * libjwt 1.10.2 takes RSA and EC keys only as PEM text (it runs
 * PEM_read_bio_PUBKEY on every decode), so a JWK is turned into an EVP_PKEY
 * with the OpenSSL 3 fromdata API and stored as PEM. A PEM given to us is
 * stored re-serialised the same way: one code path, and no stray text
 * around the key ever reaches libjwt.
 *
 * ES256: libjwt 1.10.2 signs and verifies JOSE raw R||S signatures (64
 * bytes), which test_jwt checks with a token signed by OpenSSL directly, so
 * no verification of our own is needed. */
#include "pg_json.h"
#include "pg_jwt.h"

#define JWT_JSON_DEPTH 16   /* header and claims are shallow; a deep one is refused */
#define JWKS_JSON_DEPTH 8   /* {"keys":[{"x5c":[...]}]} is 4 levels */
#include "pg_buf.h"
#include "pg_chan.h"

#include <json-c/json.h>
#include <jwt.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens ride in URLs and headers; 8 KiB is far past any sane token and
 * bounds the work an anonymous client can make us do. */
#define TOKEN_MAX 8192

/* One verification key. The alg is the key's own, fixed when it is added:
 * a token is only ever checked with keys of the alg its header names. */
typedef struct jkey {
    jwt_alg_t      alg;    /* JWT_ALG_HS256, JWT_ALG_RS256 or JWT_ALG_ES256 */
    char          *kid;    /* NULL = the key has no kid */
    unsigned char *key;    /* HS256: the secret; else NUL-terminated PEM */
    size_t         len;    /* bytes of key (without the PEM's NUL) */
} jkey_t;

struct pg_jwt_keys {
    jkey_t *v;
    size_t  n, cap;
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* A value from a key file as it may appear in an error: at most 24 bytes,
 * unprintable bytes as '?'. Only kids, ktys, algs and curve names go
 * through here, never key material. */
static const char *shown(const char *v, char buf[32])
{
    size_t o = 0, i;
    for (i = 0; v[i] && o < 24; i++) {
        unsigned char c = (unsigned char)v[i];
        buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (v[i]) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static void wipe_key(jkey_t *j)
{
    if (j->key) {
        explicit_bzero(j->key, j->len);
        free(j->key);
    }
    free(j->kid);
    memset(j, 0, sizeof *j);
}

pg_jwt_keys_t *pg_jwt_keys_create(void)
{
    return calloc(1, sizeof(pg_jwt_keys_t));
}

size_t pg_jwt_keys_count(const pg_jwt_keys_t *k)
{
    return k ? k->n : 0;
}

void pg_jwt_keys_free(pg_jwt_keys_t *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++)
        wipe_key(&k->v[i]);
    free(k->v);
    free(k);
}

/* Drop the keys added since the set held n (a JWKS that failed halfway). */
static void truncate_to(pg_jwt_keys_t *k, size_t n)
{
    while (k->n > n)
        wipe_key(&k->v[--k->n]);
}

/* Append a copy of key[0..len) (NUL-terminated in the copy) and of kid. */
static int push_key(pg_jwt_keys_t *k, jwt_alg_t alg, const void *key, size_t len,
                    const char *kid, char *err, size_t errlen)
{
    if (len > INT32_MAX) {   /* jwt_decode takes an int */
        set_err(err, errlen, "key too large");
        return -1;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        jkey_t *v = realloc(k->v, cap * sizeof *v);
        if (!v)
            goto nomem;
        k->v = v;
        k->cap = cap;
    }
    jkey_t j = { .alg = alg, .len = len };
    if (!(j.key = malloc(len + 1)))
        goto nomem;
    memcpy(j.key, key, len);
    j.key[len] = '\0';
    if (kid && !(j.kid = strdup(kid))) {
        wipe_key(&j);
        goto nomem;
    }
    k->v[k->n++] = j;
    return 0;
nomem:
    set_err(err, errlen, "out of memory");
    return -1;
}

int pg_jwt_keys_add_hs256(pg_jwt_keys_t *k, const void *secret, size_t len, const char *kid,
                          char *err, size_t errlen)
{
    if (!secret || len == 0) {
        set_err(err, errlen, "the HS256 secret is empty");
        return -1;
    }
    return push_key(k, JWT_ALG_HS256, secret, len, kid, err, errlen);
}

/* JWT_ALG_RS256 for an RSA key, JWT_ALG_ES256 for EC P-256, else JWT_ALG_NONE. */
static jwt_alg_t pkey_alg(EVP_PKEY *pk)
{
    int type = EVP_PKEY_base_id(pk);
    if (type == EVP_PKEY_RSA)
        return JWT_ALG_RS256;
    if (type == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pk, group, sizeof group, &glen) == 1
            && (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return JWT_ALG_ES256;
    }
    return JWT_ALG_NONE;
}

/* Store pk as the PEM text libjwt reads. */
static int push_pkey(pg_jwt_keys_t *k, EVP_PKEY *pk, const char *kid, char *err, size_t errlen)
{
    jwt_alg_t alg = pkey_alg(pk);
    if (alg == JWT_ALG_NONE) {
        set_err(err, errlen, "the key is neither RSA nor EC P-256");
        return -1;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    if (!b || PEM_write_bio_PUBKEY(b, pk) != 1 || (n = BIO_get_mem_data(b, &p)) <= 0) {
        BIO_free(b);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = push_key(k, alg, p, (size_t)n, kid, err, errlen);
    BIO_free(b);
    return rc;
}

int pg_jwt_keys_add_pem(pg_jwt_keys_t *k, const char *pem, size_t len, const char *kid,
                        char *err, size_t errlen)
{
    if (len > INT32_MAX) {
        set_err(err, errlen, "file too large");
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!pk) {
        set_err(err, errlen, "not a PEM public key (BEGIN PUBLIC KEY)");
        return -1;
    }
    int rc = push_pkey(k, pk, kid, err, errlen);
    EVP_PKEY_free(pk);
    return rc;
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
    pg_jwt_keys_t *k = pg_jwt_keys_create();
    if (!k) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if ((hs256_secret && pg_jwt_keys_add_hs256(k, hs256_secret, strlen(hs256_secret), NULL,
                                               err, errlen) < 0)
        || (pem && pg_jwt_keys_add_pem(k, pem, pem_len, NULL, err, errlen) < 0)) {
        pg_jwt_keys_free(k);
        return NULL;
    }
    return k;
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

/* ---- JWKS (RFC 7517, key types of RFC 7518 §6) ---- */

/* The string member name of o, NULL if absent; -1 if present but not a string. */
static int member_str(json_object *o, const char *name, const char **out)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = json_object_get_string(v);
    return 0;
}

/* The base64url member name of o decoded; NULL if absent, not a string or
 * not base64url. The caller frees (and wipes, for "k"). */
static unsigned char *member_b64(json_object *o, const char *name, size_t *len)
{
    const char *s;
    if (member_str(o, name, &s) < 0 || !s)
        return NULL;
    return (unsigned char *)b64url_decode(s, strlen(s), len);
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1
        && EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

/* RSA from n and e (big-endian unsigned). NULL when they make no usable key:
 * we ask for an odd modulus of 512 bits or more and an odd exponent >= 3,
 * which catches a swapped or truncated n/e with a clear message, and leave
 * the strength policy to whoever issues the tokens, as we do for PEM keys. */
static EVP_PKEY *rsa_from(const unsigned char *n, size_t nl, const unsigned char *e, size_t el)
{
    EVP_PKEY *pk = NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn && be && bld && BN_is_odd(bn) && BN_num_bits(bn) >= 512 && BN_is_odd(be)
        && !BN_is_one(be) && BN_num_bits(be) <= 64
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pk;
}

/* EC P-256 from x and y (32 bytes each). NULL unless the point is on the curve. */
static EVP_PKEY *ec_from(const unsigned char *x, const unsigned char *y)
{
    unsigned char pt[65];
    pt[0] = 0x04;   /* uncompressed point (SEC 1 §2.3.3) */
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
        pk = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (pk) {
        /* fromdata decodes the point; the check makes "on the curve" explicit
         * rather than an accident of the decoder. */
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        if (!c || EVP_PKEY_public_check(c) != 1) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        EVP_PKEY_CTX_free(c);
    }
    return pk;
}

/* Add JWK o (position idx, from 1) to k. Returns 1 added, 0 skipped (not a
 * signing key), -1 with err set. */
static int add_jwk(pg_jwt_keys_t *k, json_object *o, size_t idx, char *err, size_t errlen)
{
    char label[64], sb[32];
    const char *kid, *use, *kty, *alg;
    if (!json_object_is_type(o, json_type_object)) {
        pg_errf(err, errlen, "key %zu is not a JSON object", idx);
        return -1;
    }
    if (member_str(o, "kid", &kid) < 0) {
        pg_errf(err, errlen, "key %zu: kid is not a string", idx);
        return -1;
    }
    if (kid)
        snprintf(label, sizeof label, "key %zu (kid \"%s\")", idx, shown(kid, sb));
    else
        snprintf(label, sizeof label, "key %zu", idx);
    if (member_str(o, "use", &use) < 0 || member_str(o, "kty", &kty) < 0
        || member_str(o, "alg", &alg) < 0) {
        pg_errf(err, errlen, "%s: use, kty and alg must be strings", label);
        return -1;
    }
    /* An encryption key beside the signing keys is normal in a JWKS an
     * identity provider publishes; it is not ours to use, nor an error. */
    if (use && strcmp(use, "sig") != 0)
        return 0;
    if (!kty) {
        pg_errf(err, errlen, "%s: no kty", label);
        return -1;
    }
    const char *want = strcmp(kty, "RSA") == 0 ? "RS256"
                     : strcmp(kty, "EC") == 0  ? "ES256"
                     : strcmp(kty, "oct") == 0 ? "HS256" : NULL;
    if (!want) {
        pg_errf(err, errlen, "%s: kty \"%s\" is not supported (RSA, EC, oct)", label, shown(kty, sb));
        return -1;
    }
    if (alg && strcmp(alg, want) != 0) {
        pg_errf(err, errlen, "%s: alg \"%s\" is not supported (%s key: %s)", label,
                shown(alg, sb), kty, want);
        return -1;
    }
    int rc = -1;
    size_t l1 = 0, l2 = 0;
    unsigned char *a = NULL, *b = NULL;
    EVP_PKEY *pk = NULL;
    if (strcmp(kty, "oct") == 0) {
        if (!(a = member_b64(o, "k", &l1))) {
            pg_errf(err, errlen, "%s: oct key needs k (base64url)", label);
            return -1;
        }
        if (l1 == 0)
            pg_errf(err, errlen, "%s: k is empty", label);
        else
            rc = push_key(k, JWT_ALG_HS256, a, l1, kid, err, errlen);
        explicit_bzero(a, l1);
        free(a);
        return rc < 0 ? -1 : 1;
    }
    if (strcmp(kty, "RSA") == 0) {
        if (!(a = member_b64(o, "n", &l1)) || !(b = member_b64(o, "e", &l2))) {
            pg_errf(err, errlen, "%s: RSA key needs n and e (base64url)", label);
            goto out;
        }
        if (!(pk = rsa_from(a, l1, b, l2))) {
            pg_errf(err, errlen, "%s: n and e make no usable RSA key", label);
            goto out;
        }
    } else {
        const char *crv;
        if (member_str(o, "crv", &crv) < 0 || !crv) {
            pg_errf(err, errlen, "%s: EC key needs crv \"P-256\"", label);
            goto out;
        }
        if (strcmp(crv, "P-256") != 0) {
            pg_errf(err, errlen, "%s: EC crv \"%s\" is not supported (P-256 only)", label,
                    shown(crv, sb));
            goto out;
        }
        if (!(a = member_b64(o, "x", &l1)) || !(b = member_b64(o, "y", &l2)) || l1 != 32 || l2 != 32) {
            pg_errf(err, errlen, "%s: EC key needs x and y (base64url, 32 bytes each)", label);
            goto out;
        }
        if (!(pk = ec_from(a, b))) {
            pg_errf(err, errlen, "%s: x and y are not a point on P-256", label);
            goto out;
        }
    }
    char why[PG_ERRLEN];
    if (push_pkey(k, pk, kid, why, sizeof why) < 0)
        pg_errf(err, errlen, "%s: %s", label, why);
    else
        rc = 1;
out:
    EVP_PKEY_free(pk);
    free(a);
    free(b);
    return rc;
}

int pg_jwt_keys_add_jwks(pg_jwt_keys_t *k, const char *json, size_t len, char *err, size_t errlen)
{
    json_object *doc = pg_json_parse_object(json, len, JWKS_JSON_DEPTH, NULL), *keys;
    if (!doc) {
        set_err(err, errlen, "not a JWKS: not a JSON object");
        return -1;
    }
    size_t n0 = k->n;
    int rc = 0;
    if (json_object_object_get_ex(doc, "keys", &keys)) {
        if (!json_object_is_type(keys, json_type_array)) {
            set_err(err, errlen, "not a JWKS: \"keys\" is not an array");
            rc = -1;
        }
        size_t n = rc < 0 ? 0 : json_object_array_length(keys);
        for (size_t i = 0; i < n && rc == 0; i++)
            if (add_jwk(k, json_object_array_get_idx(keys, i), i + 1, err, errlen) < 0)
                rc = -1;
    } else if (json_object_object_get_ex(doc, "kty", NULL)) {
        /* One bare JWK: what many tools print for a single key. */
        if (add_jwk(k, doc, 1, err, errlen) < 0)
            rc = -1;
    } else {
        set_err(err, errlen, "not a JWKS: no \"keys\" array");
        rc = -1;
    }
    if (rc == 0 && k->n == n0) {
        set_err(err, errlen, "the JWKS holds no signing key");
        rc = -1;
    }
    if (rc < 0)
        truncate_to(k, n0);
    json_object_put(doc);
    return rc;
}

/* ---- verification ---- */

/* The token header's alg and kid (*kid malloc'd, NULL when absent).
 * Returns the alg, or JWT_ALG_INVAL with *why set. */
static jwt_alg_t peek_header(const char *token, size_t hlen, char **kid, const char **why)
{
    size_t n;
    *kid = NULL;
    char *hdr = b64url_decode(token, hlen, &n);
    if (!hdr) {
        *why = "token header is not base64url";
        return JWT_ALG_INVAL;
    }
    json_object *o = pg_json_parse_object(hdr, n, JWT_JSON_DEPTH, NULL), *alg, *v;
    free(hdr);
    if (!o) {
        *why = "token header is not a JSON object";
        return JWT_ALG_INVAL;
    }
    jwt_alg_t a = JWT_ALG_INVAL;
    *why = "token alg is not accepted (HS256, RS256 or ES256 only)";
    if (json_object_object_get_ex(o, "crit", NULL)) {
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
    if (a != JWT_ALG_INVAL && json_object_object_get_ex(o, "kid", &v)) {
        if (!json_object_is_type(v, json_type_string)) {
            *why = "token kid is not a string";
            a = JWT_ALG_INVAL;
        } else if (!(*kid = strdup(json_object_get_string(v)))) {
            *why = "out of memory";
            a = JWT_ALG_INVAL;
        }
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

/* Decode token with the keys the header allows. Returns the decoded jwt, or
 * NULL with *why: the kid names no key, no key has the alg, or none verifies. */
static jwt_t *decode_with(const pg_jwt_keys_t *k, const char *token, jwt_alg_t alg,
                          const char *kid, const char **why)
{
    int kid_known = 0, tried = 0;
    for (size_t i = 0; i < k->n; i++) {
        const jkey_t *j = &k->v[i];
        if (kid) {
            /* A kid is the issuer telling us which key signed: another key
             * that happens to verify is not the one meant, so it is not tried. */
            if (!j->kid || strcmp(j->kid, kid) != 0)
                continue;
            kid_known = 1;
        }
        if (j->alg != alg)
            continue;
        tried = 1;
        jwt_t *jwt = NULL;
        if (jwt_decode(&jwt, token, j->key, (int)j->len) == 0 && jwt) {
            if (jwt_get_alg(jwt) == alg)
                return jwt;
            jwt_free(jwt);
        }
    }
    *why = kid && !kid_known ? "unknown key id"
         : !tried            ? "token alg does not match the configured key"
                             : "bad token signature (or malformed token)";
    return NULL;
}

int pg_jwt_verify(const pg_jwt_keys_t *k, const char *token, int64_t now,
                  pg_identity_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!k || k->n == 0) {
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
    char *kid;
    jwt_alg_t alg = peek_header(token, (size_t)(d1 - token), &kid, &why);
    if (alg == JWT_ALG_INVAL) {
        set_err(err, errlen, why);
        return -1;
    }
    jwt_t *jwt = decode_with(k, token, alg, kid, &why);
    free(kid);
    if (!jwt) {
        set_err(err, errlen, why);
        return -1;
    }

    char *claims = NULL;
    json_object *c = NULL, *v;
    int rc = -1;
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
    /* iat only matters for revocation (SPEC §7), where a token without a
     * usable iat counts as older than any revocation. So an iat that is not
     * a number is read as absent rather than refused, which keeps tokens
     * that were accepted before iat was read; the fraction of a second is
     * dropped, so iat 1000.5 is "at" a revocation in second 1000. */
    if (json_object_object_get_ex(c, "iat", &v) && numeric_date(v, &t) == 0 && t >= 1)
        out->iat = t >= 9.2e18 ? INT64_MAX : (int64_t)t;
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
    /* "info" is the issuer's to shape (Centrifugo's connection info): any
     * JSON value, handed on as compact text; null is the same as absent. */
    if (json_object_object_get_ex(c, "info", &v) && v) {
        const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN
                                                          | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s || !(out->info = strdup(s))) {
            set_err(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    if (rc < 0)
        pg_identity_free(out);
    json_object_put(c);
    free(claims);
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
    free(id->info);
    id->info = NULL;
    id->exp = 0;
    id->iat = 0;
}
