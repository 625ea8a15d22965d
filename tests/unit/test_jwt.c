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
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "pg_jwt.h"

#define NOW 1800000000LL

typedef struct keypair {
    char *priv;   /* PEM, NUL-terminated */
    char *pub;
    EVP_PKEY *pkey;
} keypair_t;

static keypair_t rsa1, rsa2, ec1, ec2, ec384;
static char err[PG_ERRLEN];

static char *bio_str(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static int make_pair(keypair_t *k, EVP_PKEY *pk)
{
    if (!pk)
        return -1;
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(a, pk, NULL, NULL, 0, NULL, NULL);
    PEM_write_bio_PUBKEY(b, pk);
    k->priv = bio_str(a);
    k->pub = bio_str(b);
    k->pkey = pk;
    return 0;
}

static void free_pair(keypair_t *k)
{
    free(k->priv);
    free(k->pub);
    EVP_PKEY_free(k->pkey);
}

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

static char *b64url(const unsigned char *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = malloc(n * 4 / 3 + 4), *q = o;
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *q++ = a[v >> 18];
        *q++ = a[(v >> 12) & 63];
        *q++ = a[(v >> 6) & 63];
        *q++ = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *q++ = a[v >> 18];
        *q++ = a[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *q++ = a[v >> 18];
        *q++ = a[(v >> 12) & 63];
        *q++ = a[(v >> 6) & 63];
    }
    *q = '\0';
    return o;
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
