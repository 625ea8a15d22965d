/* test_jwt.c - client tokens. Keys are generated at run time with OpenSSL
 * and tokens made with libjwt (jwt_encode_str) or by hand, so nothing
 * secret is checked in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "pg_jwt.h"
#include "test_keypair.h"

#define NOW 1800000000LL

static keypair_t rsa1, rsa2, ec1, ec2, ec384;
static char err[PG_ERRLEN];

static int setup(void **state)
{
    (void)state;
    if (make_pair(&rsa1, EVP_RSA_gen(2048)) || make_pair(&rsa2, EVP_RSA_gen(2048))
        || make_pair(&ec1, EVP_EC_gen("P-256")) || make_pair(&ec2, EVP_EC_gen("P-256"))
        || make_pair(&ec384, EVP_EC_gen("P-384")))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free_pair(&rsa1);
    free_pair(&rsa2);
    free_pair(&ec1);
    free_pair(&ec2);
    free_pair(&ec384);
    return 0;
}

/* A token from libjwt: alg, signing key (secret or private PEM), claims. */
static char *mint(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    if (claims)
        assert_int_equal(jwt_add_grants_json(j, claims), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

static char *b64s(const char *s) { return b64url((const unsigned char *)s, strlen(s)); }

/* header.payload, both base64url of the given JSON texts. */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64s(header), *p = b64s(payload);
    char *o = malloc(strlen(h) + strlen(p) + 2);
    sprintf(o, "%s.%s", h, p);
    free(h);
    free(p);
    return o;
}

static char *join_sig(char *input, const unsigned char *sig, size_t n)
{
    char *s = b64url(sig, n);
    char *o = malloc(strlen(input) + strlen(s) + 2);
    sprintf(o, "%s.%s", input, s);
    free(s);
    free(input);
    return o;
}

/* Hand-made HS256 token with any header: for headers libjwt will not write. */
static char *hs_token(const char *header, const char *payload, const char *secret)
{
    char *in = signing_input(header, payload);
    unsigned char mac[32];
    unsigned int mlen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)in, strlen(in), mac, &mlen);
    return join_sig(in, mac, mlen);
}

/* ES256 signed by OpenSSL directly, with the JOSE raw R||S signature
 * (RFC 7518 §3.4), not by libjwt: proves interoperability. */
static char *es_token_openssl(EVP_PKEY *pk, const char *payload)
{
    char *in = signing_input("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dlen = sizeof der;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk), 1);
    assert_int_equal(EVP_DigestSign(md, der, &dlen, (const unsigned char *)in, strlen(in)), 1);
    EVP_MD_CTX_free(md);
    const unsigned char *dp = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &dp, (long)dlen);
    assert_non_null(sig);
    unsigned char raw[64];
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32), 32);
    ECDSA_SIG_free(sig);
    return join_sig(in, raw, 64);
}

static pg_jwt_keys_t *keys(const char *secret, const char *pem)
{
    pg_jwt_keys_t *k = pg_jwt_keys_new(secret, pem, pem ? strlen(pem) : 0, err, sizeof err);
    if (!k)
        fail_msg("keys: %s", err);
    return k;
}

static int verify(const pg_jwt_keys_t *k, const char *tok, pg_identity_t *id)
{
    err[0] = '\0';
    int rc = pg_jwt_verify(k, tok, NOW, id, err, sizeof err);
    if (rc < 0) {
        assert_true(err[0] != '\0');
        assert_null(id->sub);
        assert_int_equal(id->channels.n, 0);
        /* The token never shows up in the reason. */
        if (tok && strlen(tok) > 8) {
            const char *sig = strrchr(tok, '.');
            assert_null(strstr(err, tok));
            if (sig && strlen(sig) > 8)
                assert_null(strstr(err, sig + 1));
        }
    }
    return rc;
}

/* Verify must fail with want in the reason. */
static void refused(const pg_jwt_keys_t *k, const char *tok, const char *want)
{
    pg_identity_t id;
    if (verify(k, tok, &id) != -1) {
        pg_identity_free(&id);
        fail_msg("token accepted, want \"%s\"", want);
    }
    if (!strstr(err, want))
        fail_msg("reason \"%s\" lacks \"%s\"", err, want);
}

static void accepted(const pg_jwt_keys_t *k, const char *tok, const char *sub)
{
    pg_identity_t id;
    if (verify(k, tok, &id) != 0)
        fail_msg("refused: %s", err);
    assert_string_equal(id.sub, sub);
    pg_identity_free(&id);
}

static void keys_new(void **state)
{
    (void)state;
    assert_null(pg_jwt_keys_new(NULL, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "no JWT key"));
    assert_null(pg_jwt_keys_new("", NULL, 0, err, sizeof err));
    const char *junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert_null(pg_jwt_keys_new(NULL, junk, strlen(junk), err, sizeof err));
    assert_non_null(strstr(err, "not a PEM public key"));
    assert_null(pg_jwt_keys_new(NULL, "hello", 5, err, sizeof err));
    assert_null(pg_jwt_keys_new(NULL, rsa1.priv, strlen(rsa1.priv), err, sizeof err));
    assert_null(pg_jwt_keys_new(NULL, ec384.pub, strlen(ec384.pub), err, sizeof err));
    assert_non_null(strstr(err, "neither RSA nor EC P-256"));
    assert_null(pg_jwt_keys_new("s", ec384.pub, strlen(ec384.pub), err, sizeof err));
    /* An Ed25519 key is neither. */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    keypair_t edp;
    assert_int_equal(make_pair(&edp, ed), 0);
    assert_null(pg_jwt_keys_new(NULL, edp.pub, strlen(edp.pub), err, sizeof err));
    free_pair(&edp);
    pg_jwt_keys_free(keys("s", NULL));
    pg_jwt_keys_free(keys(NULL, rsa1.pub));
    pg_jwt_keys_free(keys(NULL, ec1.pub));
    pg_jwt_keys_free(keys("s", rsa1.pub));
    pg_jwt_keys_free(NULL);
}

static void hs256(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("top-secret", NULL);
    char *t = mint(JWT_ALG_HS256, "top-secret",
                   "{\"sub\":\"42\",\"exp\":1800000060,\"channels\":[\"news\",\"public.*\"]}");
    pg_identity_t id;
    assert_int_equal(verify(k, t, &id), 0);
    assert_string_equal(id.sub, "42");
    assert_int_equal(id.exp, 1800000060);
    assert_int_equal(id.channels.n, 2);
    assert_string_equal(id.channels.v[0], "news");
    assert_string_equal(id.channels.v[1], "public.*");
    pg_identity_free(&id);
    assert_null(id.sub);
    assert_int_equal(id.channels.n, 0);
    pg_identity_free(&id);
    pg_identity_free(NULL);
    free(t);

    /* Without exp or channels. */
    t = mint(JWT_ALG_HS256, "top-secret", "{\"sub\":\"a@b.c\"}");
    assert_int_equal(verify(k, t, &id), 0);
    assert_int_equal(id.exp, 0);
    assert_int_equal(id.channels.n, 0);
    pg_identity_free(&id);
    free(t);

    /* Wrong secret. */
    t = mint(JWT_ALG_HS256, "other-secret", "{\"sub\":\"42\"}");
    refused(k, t, "signature");
    free(t);
    pg_jwt_keys_free(k);
}

static void time_claims(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", NULL);
    struct { const char *claims; const char *want; } cases[] = {
        { "{\"sub\":\"1\",\"exp\":1800000000}", "expired" },        /* exp == now */
        { "{\"sub\":\"1\",\"exp\":1799999999}", "expired" },
        { "{\"sub\":\"1\",\"exp\":1799999999.5}", "expired" },
        { "{\"sub\":\"1\",\"exp\":0}", "expired" },
        { "{\"sub\":\"1\",\"exp\":-5}", "expired" },
        { "{\"sub\":\"1\",\"exp\":\"1900000000\"}", "exp is not a number" },
        { "{\"sub\":\"1\",\"exp\":null}", "exp is not a number" },
        { "{\"sub\":\"1\",\"nbf\":1800000001}", "not valid yet" },
        { "{\"sub\":\"1\",\"nbf\":1800000000.5}", "not valid yet" },
        { "{\"sub\":\"1\",\"nbf\":\"0\"}", "nbf is not a number" },
        { "{\"sub\":\"1\",\"exp\":1800000100,\"nbf\":1800000050}", "not valid yet" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = mint(JWT_ALG_HS256, "s", cases[i].claims);
        refused(k, t, cases[i].want);
        free(t);
    }
    const char *ok[] = {
        "{\"sub\":\"1\",\"exp\":1800000001}",
        "{\"sub\":\"1\",\"exp\":1800000000.5}",
        "{\"sub\":\"1\",\"nbf\":1800000000}",
        "{\"sub\":\"1\",\"nbf\":1700000000,\"exp\":1900000000,\"iat\":\"whatever\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *t = mint(JWT_ALG_HS256, "s", ok[i]);
        accepted(k, t, "1");
        free(t);
    }
    pg_jwt_keys_free(k);
}

static void tampering(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", NULL);
    char *t = mint(JWT_ALG_HS256, "s", "{\"sub\":\"42\",\"channels\":[\"news\"]}");
    /* Swap in another payload, keep the signature. */
    char *p2 = b64s("{\"sub\":\"1\",\"channels\":[\"*\"]}");
    char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');
    char forged[1024];
    snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(d1 - t), t, p2, d2);
    refused(k, forged, "signature");
    free(p2);
    /* Flip one character of the signature. */
    char *sig = strdup(t);
    char *last = sig + strlen(sig) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    refused(k, sig, "signature");
    free(sig);
    /* Drop the signature. */
    char nosig[1024];
    snprintf(nosig, sizeof nosig, "%.*s.", (int)(d2 - t), t);
    refused(k, nosig, "malformed");
    free(t);
    pg_jwt_keys_free(k);
}

static void alg_none_and_others(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", rsa1.pub);
    char *in = signing_input("{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"42\"}");
    char tok[512];
    snprintf(tok, sizeof tok, "%s.", in);
    refused(k, tok, "malformed");
    snprintf(tok, sizeof tok, "%s.AAAA", in);
    refused(k, tok, "alg is not accepted");
    free(in);
    /* The same HMAC, but an alg we do not take. */
    const char *headers[] = {
        "{\"alg\":\"None\"}", "{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"RS384\"}",
        "{\"alg\":\"ES512\"}", "{\"alg\":\"PS256\"}", "{\"alg\":5}", "{\"alg\":null}", "{\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *t = hs_token(headers[i], "{\"sub\":\"42\"}", "s");
        refused(k, t, i + 1 == sizeof headers / sizeof headers[0] ? "crit" : "alg");
        free(t);
    }
    /* A hand-made HS256 token with a normal header does pass. */
    char *t = hs_token("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", "{\"sub\":\"42\"}", "s");
    accepted(k, t, "42");
    free(t);
    pg_jwt_keys_free(k);
}

static void key_confusion(void **state)
{
    (void)state;
    /* RS256-only: an HS256 token whose HMAC key is the public PEM text. */
    pg_jwt_keys_t *k = keys(NULL, rsa1.pub);
    char *t = hs_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"42\"}", rsa1.pub);
    refused(k, t, "does not match the configured key");
    pg_jwt_keys_free(k);
    /* With a secret too, the PEM still is not the HMAC key. */
    k = keys("real-secret", rsa1.pub);
    refused(k, t, "signature");
    free(t);
    /* An ES256 token to an RSA config and the other way round. */
    t = mint(JWT_ALG_ES256, ec1.priv, "{\"sub\":\"42\"}");
    refused(k, t, "does not match");
    pg_jwt_keys_free(k);
    k = keys(NULL, ec1.pub);
    accepted(k, t, "42");
    free(t);
    t = mint(JWT_ALG_RS256, rsa1.priv, "{\"sub\":\"42\"}");
    refused(k, t, "does not match");
    free(t);
    /* HS256 to a PEM-only config. */
    t = mint(JWT_ALG_HS256, "s", "{\"sub\":\"42\"}");
    refused(k, t, "does not match");
    free(t);
    pg_jwt_keys_free(k);
}

static void rs256(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys(NULL, rsa1.pub);
    char *t = mint(JWT_ALG_RS256, rsa1.priv, "{\"sub\":\"u1\",\"exp\":1800000500,\"channels\":[]}");
    pg_identity_t id;
    assert_int_equal(verify(k, t, &id), 0);
    assert_string_equal(id.sub, "u1");
    assert_int_equal(id.exp, 1800000500);
    assert_int_equal(id.channels.n, 0);
    pg_identity_free(&id);
    free(t);
    t = mint(JWT_ALG_RS256, rsa2.priv, "{\"sub\":\"u1\"}");
    refused(k, t, "signature");
    free(t);
    pg_jwt_keys_free(k);
}

static void es256(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", ec1.pub);
    char *t = mint(JWT_ALG_ES256, ec1.priv, "{\"sub\":\"e1\"}");
    /* libjwt 1.10.2 writes the 64-byte JOSE form: 86 base64url chars. */
    assert_int_equal(strlen(strrchr(t, '.') + 1), 86);
    accepted(k, t, "e1");
    free(t);
    t = mint(JWT_ALG_ES256, ec2.priv, "{\"sub\":\"e1\"}");
    refused(k, t, "signature");
    free(t);
    /* Signed outside libjwt; many times, so R or S with leading zero bytes
     * turn up too. */
    for (int i = 0; i < 64; i++) {
        t = es_token_openssl(ec1.pkey, "{\"sub\":\"ossl\"}");
        accepted(k, t, "ossl");
        free(t);
    }
    t = es_token_openssl(ec2.pkey, "{\"sub\":\"ossl\"}");
    refused(k, t, "signature");
    free(t);
    pg_jwt_keys_free(k);
}

static void garbage(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", ec1.pub);
    refused(k, NULL, "missing");
    refused(k, "", "missing");
    const char *bad[] = {
        "abc", "a.b", "a.b.c.d", "..", "...", ".b.c", "a..c", "!!!.!!!.!!!", "e30.e30.e30",
        "bm90IGpzb24.e30.AAAA", "W10.e30.AAAA", "eyJhbGciOiJIUzI1NiJ9.!!!.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.!!!", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA",
        "eyJhbGciOiJIUzI1NiJ9 .e30.AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA\n", "a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pg_identity_t id;
        if (verify(k, bad[i], &id) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    char *big = malloc(20000);
    memset(big, 'a', 19999);
    big[19999] = '\0';
    big[100] = '.';
    big[200] = '.';
    refused(k, big, "too long");
    free(big);
    pg_identity_t id;
    assert_int_equal(pg_jwt_verify(NULL, "a.b.c", NOW, &id, err, sizeof err), -1);
    pg_jwt_keys_free(k);
}

static void sub_claim(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", NULL);
    char sub123[200], claims[300];
    memset(sub123, 'u', 123);
    sub123[123] = '\0';
    struct { const char *claims; const char *want; } bad[] = {
        { "{}", "no string sub" },
        { "{\"sub\":42}", "no string sub" },
        { "{\"sub\":null}", "no string sub" },
        { "{\"sub\":[\"a\"]}", "no string sub" },
        { "{\"sub\":\"\"}", "not a valid user id" },
        { "{\"sub\":\"a b\"}", "not a valid user id" },
        { "{\"sub\":\"a/b\"}", "not a valid user id" },
        { "{\"sub\":\"a\\u0000b\"}", "malformed" }, /* libjwt refuses the NUL itself */
        { "{\"sub\":\"\\u00e9\"}", "not a valid user id" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* by hand: libjwt (jansson) will not encode a NUL in a string */
        char *t = hs_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", bad[i].claims, "s");
        refused(k, t, bad[i].want);
        free(t);
    }
    snprintf(claims, sizeof claims, "{\"sub\":\"%s\"}", sub123);
    char *t = mint(JWT_ALG_HS256, "s", claims);
    accepted(k, t, sub123);
    free(t);
    snprintf(claims, sizeof claims, "{\"sub\":\"%su\"}", sub123);
    t = mint(JWT_ALG_HS256, "s", claims);
    refused(k, t, "not a valid user id");
    free(t);
    t = mint(JWT_ALG_HS256, "s", "{\"sub\":\"_svc:a-b.c@d\"}");
    accepted(k, t, "_svc:a-b.c@d");
    free(t);
    pg_jwt_keys_free(k);
}

static void channels_claim(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", NULL);
    const char *bad[] = {
        "{\"sub\":\"1\",\"channels\":\"news\"}",
        "{\"sub\":\"1\",\"channels\":{\"news\":true}}",
        "{\"sub\":\"1\",\"channels\":[\"news\",5]}",
        "{\"sub\":\"1\",\"channels\":[null]}",
        "{\"sub\":\"1\",\"channels\":[[\"news\"]]}",
        "{\"sub\":\"1\",\"channels\":null}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = mint(JWT_ALG_HS256, "s", bad[i]);
        refused(k, t, "channels claim");
        free(t);
    }
    char *t = mint(JWT_ALG_HS256, "s", "{\"sub\":\"1\",\"channels\":[\"a\",\"b.*\",\"user:9\",\"*\"]}");
    pg_identity_t id;
    assert_int_equal(verify(k, t, &id), 0);
    assert_int_equal(id.channels.n, 4);
    assert_string_equal(id.channels.v[3], "*");
    pg_identity_free(&id);
    free(t);
    pg_jwt_keys_free(k);
}

/* ---- key sets: several keys, JWKS, kid ---- */

/* A token from libjwt with a kid header (NULL = none). */
static char *mint_kid(jwt_alg_t alg, const char *key, size_t keylen, const char *kid, const char *claims)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)keylen), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

static char *b64bn(EVP_PKEY *pk, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
    unsigned char buf[1024];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* One JWK for pk, with extra members (e.g. "\"kid\":\"a\",") put first. */
static char *jwk_of(EVP_PKEY *pk, const char *extra)
{
    char *o = malloc(4096);
    if (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA) {
        char *n = b64bn(pk, OSSL_PKEY_PARAM_RSA_N, 0), *e = b64bn(pk, OSSL_PKEY_PARAM_RSA_E, 0);
        snprintf(o, 4096, "{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", extra, n, e);
        free(n);
        free(e);
    } else {
        char *x = b64bn(pk, OSSL_PKEY_PARAM_EC_PUB_X, 32), *y = b64bn(pk, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        snprintf(o, 4096, "{%s\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", extra, x, y);
        free(x);
        free(y);
    }
    return o;
}

static void add_jwks_ok(pg_jwt_keys_t *k, const char *doc)
{
    if (pg_jwt_keys_add_jwks(k, doc, strlen(doc), err, sizeof err) != 0)
        fail_msg("jwks refused: %s", err);
}

static void several_secrets(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = pg_jwt_keys_create();
    assert_non_null(k);
    assert_int_equal(pg_jwt_keys_count(k), 0);
    /* An empty set verifies nothing. */
    char *t = mint(JWT_ALG_HS256, "old", "{\"sub\":\"1\"}");
    refused(k, t, "no JWT key");
    assert_int_equal(pg_jwt_keys_add_hs256(k, "old", 3, NULL, err, sizeof err), 0);
    assert_int_equal(pg_jwt_keys_add_hs256(k, "new", 3, NULL, err, sizeof err), 0);
    assert_int_equal(pg_jwt_keys_add_hs256(k, "", 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(pg_jwt_keys_count(k), 2);
    accepted(k, t, "1");
    free(t);
    t = mint(JWT_ALG_HS256, "new", "{\"sub\":\"2\"}");
    accepted(k, t, "2");
    free(t);
    t = mint(JWT_ALG_HS256, "gone", "{\"sub\":\"3\"}");
    refused(k, t, "signature");
    free(t);
    /* Still no RSA key: an RS256 token is refused for its alg. */
    t = mint(JWT_ALG_RS256, rsa1.priv, "{\"sub\":\"4\"}");
    refused(k, t, "does not match");
    free(t);
    /* Binary secrets (from a JWK "k") work too. */
    const char bin[] = { 's', 0, 'x', (char)0xff };
    assert_int_equal(pg_jwt_keys_add_hs256(k, bin, sizeof bin, NULL, err, sizeof err), 0);
    t = mint_kid(JWT_ALG_HS256, bin, sizeof bin, NULL, "{\"sub\":\"5\"}");
    accepted(k, t, "5");
    free(t);
    pg_jwt_keys_free(k);
    pg_jwt_keys_free(NULL);
    assert_int_equal(pg_jwt_keys_count(NULL), 0);
}

static void rs_and_es_together(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = pg_jwt_keys_create();
    const keypair_t *pairs[] = { &rsa1, &rsa2, &ec1, &ec2 };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pg_jwt_keys_add_pem(k, pairs[i]->pub, strlen(pairs[i]->pub), NULL, err, sizeof err), 0);
    assert_int_equal(pg_jwt_keys_add_pem(k, ec384.pub, strlen(ec384.pub), NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "neither RSA nor EC P-256"));
    assert_int_equal(pg_jwt_keys_add_pem(k, "junk", 4, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PEM public key"));
    assert_int_equal(pg_jwt_keys_count(k), 4);
    for (size_t i = 0; i < 4; i++) {
        jwt_alg_t alg = i < 2 ? JWT_ALG_RS256 : JWT_ALG_ES256;
        char *t = mint(alg, pairs[i]->priv, "{\"sub\":\"k\"}");
        accepted(k, t, "k");
        free(t);
    }
    /* Text around the PEM (a comment, a second key) does not matter. */
    char pem[4096];
    snprintf(pem, sizeof pem, "my key:\n%s%s", ec1.pub, rsa1.pub);
    pg_jwt_keys_t *k2 = pg_jwt_keys_create();
    assert_int_equal(pg_jwt_keys_add_pem(k2, pem, strlen(pem), "e", err, sizeof err), 0);
    char *t = es_token_openssl(ec1.pkey, "{\"sub\":\"ossl\"}");
    accepted(k2, t, "ossl");
    free(t);
    /* An HS256 token whose HMAC key is one of the PEMs: still refused. */
    t = hs_token("{\"alg\":\"HS256\"}", "{\"sub\":\"42\"}", rsa1.pub);
    refused(k, t, "does not match");
    free(t);
    pg_jwt_keys_free(k);
    pg_jwt_keys_free(k2);
}

static void jwks_and_kid(void **state)
{
    (void)state;
    char *r1 = jwk_of(rsa1.pkey, "\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",");
    char *r2 = jwk_of(rsa2.pkey, "\"kid\":\"r2\",");
    char *e1 = jwk_of(ec1.pkey, "\"kid\":\"e1\",\"alg\":\"ES256\",");
    char *e2 = jwk_of(ec2.pkey, "");   /* no kid */
    char *enc = jwk_of(rsa2.pkey, "\"kid\":\"enc\",\"use\":\"enc\",\"alg\":\"RSA-OAEP\",");
    char doc[16384];
    /* "c2VjcmV0LW9jdA" is "secret-oct". */
    snprintf(doc, sizeof doc,
             " \n{\"keys\":[%s,%s,%s,%s,%s,{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"c2VjcmV0LW9jdA\",\"alg\":\"HS256\"}]}",
             r1, r2, e1, e2, enc);
    pg_jwt_keys_t *k = pg_jwt_keys_create();
    add_jwks_ok(k, doc);
    assert_int_equal(pg_jwt_keys_count(k), 5);   /* the "enc" key is skipped */

    /* The right kid verifies. */
    char *t = mint_kid(JWT_ALG_RS256, rsa1.priv, strlen(rsa1.priv), "r1", "{\"sub\":\"a\"}");
    accepted(k, t, "a");
    free(t);
    t = mint_kid(JWT_ALG_RS256, rsa2.priv, strlen(rsa2.priv), "r2", "{\"sub\":\"b\"}");
    accepted(k, t, "b");
    free(t);
    t = mint_kid(JWT_ALG_ES256, ec1.priv, strlen(ec1.priv), "e1", "{\"sub\":\"c\"}");
    accepted(k, t, "c");
    free(t);
    t = mint_kid(JWT_ALG_HS256, "secret-oct", 10, "h1", "{\"sub\":\"d\"}");
    accepted(k, t, "d");
    free(t);
    /* A wrong kid is refused although another key (r1's) would verify. */
    t = mint_kid(JWT_ALG_RS256, rsa1.priv, strlen(rsa1.priv), "r2", "{\"sub\":\"a\"}");
    refused(k, t, "signature");
    free(t);
    /* The skipped encryption key's kid is unknown. */
    t = mint_kid(JWT_ALG_RS256, rsa2.priv, strlen(rsa2.priv), "enc", "{\"sub\":\"a\"}");
    refused(k, t, "unknown key id");
    free(t);
    t = mint_kid(JWT_ALG_RS256, rsa1.priv, strlen(rsa1.priv), "nope", "{\"sub\":\"a\"}");
    refused(k, t, "unknown key id");
    free(t);
    /* A kid of a key of another alg. */
    t = mint_kid(JWT_ALG_HS256, "secret-oct", 10, "r1", "{\"sub\":\"a\"}");
    refused(k, t, "does not match");
    free(t);
    /* e2 has no kid: a token naming any kid never reaches it. */
    t = mint_kid(JWT_ALG_ES256, ec2.priv, strlen(ec2.priv), "e1", "{\"sub\":\"a\"}");
    refused(k, t, "signature");
    free(t);
    /* Without kid every key of the alg is tried, with or without a kid. */
    const keypair_t *pairs[] = { &rsa1, &rsa2, &ec1, &ec2 };
    for (size_t i = 0; i < 4; i++) {
        t = mint(i < 2 ? JWT_ALG_RS256 : JWT_ALG_ES256, pairs[i]->priv, "{\"sub\":\"nokid\"}");
        accepted(k, t, "nokid");
        free(t);
    }
    t = mint(JWT_ALG_HS256, "secret-oct", "{\"sub\":\"nokid\"}");
    accepted(k, t, "nokid");
    free(t);
    t = mint(JWT_ALG_HS256, "other", "{\"sub\":\"nokid\"}");
    refused(k, t, "signature");
    free(t);
    /* A kid that is not a string. */
    t = hs_token("{\"alg\":\"HS256\",\"kid\":7}", "{\"sub\":\"a\"}", "secret-oct");
    refused(k, t, "kid is not a string");
    free(t);
    pg_jwt_keys_free(k);

    /* Keys without any kid (plain --jwt-secret): a token with a kid names no
     * key of ours. */
    k = keys("s", NULL);
    t = mint_kid(JWT_ALG_HS256, "s", 1, "k1", "{\"sub\":\"a\"}");
    refused(k, t, "unknown key id");
    free(t);
    pg_jwt_keys_free(k);

    /* One bare JWK is a set of one. */
    k = pg_jwt_keys_create();
    add_jwks_ok(k, r1);
    assert_int_equal(pg_jwt_keys_count(k), 1);
    t = mint(JWT_ALG_RS256, rsa1.priv, "{\"sub\":\"a\"}");
    accepted(k, t, "a");
    free(t);
    pg_jwt_keys_free(k);
    free(r1);
    free(r2);
    free(e1);
    free(e2);
    free(enc);
}

static void jwks_refused(void **state)
{
    (void)state;
    char *r1 = jwk_of(rsa1.pkey, "\"kid\":\"r1\",");
    char *e384 = malloc(4096);
    {   /* A P-384 key written as if it were P-256: wrong coordinate size. */
        char *x = b64bn(ec384.pkey, OSSL_PKEY_PARAM_EC_PUB_X, 48), *y = b64bn(ec384.pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 48);
        snprintf(e384, 4096, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
        free(x);
        free(y);
    }
    char *e1 = jwk_of(ec1.pkey, "");
    /* Off the curve: y of ec1 with its last byte changed. */
    char *bad_pt = strdup(e1);
    char *yq = strstr(bad_pt, "\"y\":\"") + 5;
    yq[40] = yq[40] == 'A' ? 'B' : 'A';
    char mixed[8192], sig_after_bad[8192];
    snprintf(mixed, sizeof mixed, "{\"keys\":[%s,{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}", r1);
    snprintf(sig_after_bad, sizeof sig_after_bad, "{\"keys\":[%s,%s]}", r1, bad_pt);
    struct { const char *doc; const char *want; } cases[] = {
        { "", "not a JSON object" },
        { "[]", "not a JSON object" },
        { "{\"keys\":[", "not a JSON object" },
        { "{\"nokeys\":[]}", "no \"keys\" array" },
        { "{\"keys\":{}}", "\"keys\" is not an array" },
        { "{\"keys\":[]}", "holds no signing key" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", "holds no signing key" },
        { "{\"keys\":[1]}", "key 1 is not a JSON object" },
        { "{\"keys\":[{\"n\":\"AQAB\"}]}", "key 1: no kty" },
        { "{\"keys\":[{\"kty\":5}]}", "must be strings" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"kid\":5}]}", "key 1: kid is not a string" },
        { mixed, "key 2: kty \"OKP\" is not supported" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"e\":\"AQAB\"}]}", "key 1 (kid \"a\"): RSA key needs n and e" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"}]}", "needs n and e" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", "no usable RSA key" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS384\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", "alg \"RS384\" is not supported" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"ES256\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", "alg \"ES256\"" },
        { "{\"keys\":[{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}]}", "needs crv" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}", "crv \"P-384\" is not supported" },
        { e384, "x and y (base64url, 32 bytes each)" },
        { sig_after_bad, "key 2: x and y are not a point on P-256" },
        { "{\"keys\":[{\"kty\":\"oct\"}]}", "oct key needs k" },
        { "{\"keys\":[{\"kty\":\"oct\",\"k\":\"\"}]}", "k is empty" },
        { "{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS512\",\"k\":\"c2VjcmV0LW9jdA\"}]}", "alg \"HS512\"" },
        { "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\\nb\",\"alg\":\"x\",\"k\":\"c2VjcmV0LW9jdA\"}]}", "(kid \"a?b\")" },
    };
    pg_jwt_keys_t *k = keys("s", NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        if (pg_jwt_keys_add_jwks(k, cases[i].doc, strlen(cases[i].doc), err, sizeof err) != -1)
            fail_msg("case %zu accepted", i);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
        assert_null(strchr(err, '\n'));
        assert_null(strstr(err, "c2VjcmV0LW9jdA"));   /* never a key's value */
        /* Nothing of a refused document stays in the set. */
        assert_int_equal(pg_jwt_keys_count(k), 1);
    }
    /* The good first key of a refused document does not verify. */
    char *t = mint(JWT_ALG_RS256, rsa1.priv, "{\"sub\":\"a\"}");
    refused(k, t, "does not match");
    free(t);
    pg_jwt_keys_free(k);
    free(r1);
    free(e384);
    free(e1);
    free(bad_pt);
}

static void iat_and_info(void **state)
{
    (void)state;
    pg_jwt_keys_t *k = keys("s", NULL);
    struct { const char *claims; int64_t iat; const char *info; } cases[] = {
        { "{\"sub\":\"1\"}", 0, NULL },
        { "{\"sub\":\"1\",\"iat\":1799999000}", 1799999000, NULL },
        { "{\"sub\":\"1\",\"iat\":1799999000.9}", 1799999000, NULL },
        { "{\"sub\":\"1\",\"iat\":\"1799999000\"}", 0, NULL },
        { "{\"sub\":\"1\",\"iat\":-5}", 0, NULL },
        { "{\"sub\":\"1\",\"iat\":0}", 0, NULL },
        { "{\"sub\":\"1\",\"iat\":1900000000}", 1900000000, NULL },   /* the issuer's clock is its own */
        { "{\"sub\":\"1\",\"info\":null}", 0, NULL },
        { "{\"sub\":\"1\",\"info\":{\"name\":\"Ann\",\"tags\":[1,2.5,true],\"url\":\"a/b\"}}", 0,
          "{\"name\":\"Ann\",\"tags\":[1,2.5,true],\"url\":\"a/b\"}" },
        { "{\"sub\":\"1\",\"info\":\"just text \\u00e9\"}", 0, "\"just text \xc3\xa9\"" },
        { "{\"sub\":\"1\",\"info\":42}", 0, "42" },
        { "{\"sub\":\"1\",\"info\":[]}", 0, "[]" },
        { "{\"sub\":\"1\",\"iat\":1700000000,\"info\":{}}", 1700000000, "{}" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = hs_token("{\"alg\":\"HS256\"}", cases[i].claims, "s");
        pg_identity_t id;
        if (verify(k, t, &id) != 0)
            fail_msg("case %zu refused: %s", i, err);
        assert_int_equal(id.iat, cases[i].iat);
        if (cases[i].info)
            assert_string_equal(id.info, cases[i].info);
        else
            assert_null(id.info);
        pg_identity_free(&id);
        assert_null(id.info);
        assert_int_equal(id.iat, 0);
        free(t);
    }
    /* A refused token leaves no info behind. */
    char *t = hs_token("{\"alg\":\"HS256\"}", "{\"sub\":\"1\",\"iat\":5,\"info\":{\"a\":1},\"channels\":5}", "s");
    refused(k, t, "channels");
    free(t);
    pg_jwt_keys_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_new),
        cmocka_unit_test(hs256),
        cmocka_unit_test(time_claims),
        cmocka_unit_test(tampering),
        cmocka_unit_test(alg_none_and_others),
        cmocka_unit_test(key_confusion),
        cmocka_unit_test(rs256),
        cmocka_unit_test(es256),
        cmocka_unit_test(garbage),
        cmocka_unit_test(sub_claim),
        cmocka_unit_test(channels_claim),
        cmocka_unit_test(several_secrets),
        cmocka_unit_test(rs_and_es_together),
        cmocka_unit_test(jwks_and_kid),
        cmocka_unit_test(jwks_refused),
        cmocka_unit_test(iat_and_info),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
