/* fuzz_token - pg_jwt_verify() with fixed keys generated at startup.
 *
 * Keys: an HS256 secret, and an RSA-2048 public key (RS256). Each input is
 * verified against an HS256-only, an RS256-only and an HS256+RS256 key set.
 * The first byte picks how the rest becomes a token:
 *   0: the bytes are the token as a client sent it (signature part included);
 *   1: "header\npayload" JSON, base64url-encoded and HS256-signed here with
 *      the right secret, so the fuzzer gets past the signature into the
 *      claim checks (exp, nbf, sub, channels);
 *   2: the same, RS256-signed with the matching private key;
 *   3: the same, HS256-signed with the RSA public key PEM as the secret
 *      (the classic alg-confusion attack): must never verify against a key
 *      set that has only the RSA key.
 * Invariants: mode 0/3 tokens never verify against the RSA-only keys unless
 * signed by its private key (impossible here); a verified identity has a
 * sub that makes a valid user channel; err is NUL-terminated on failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "pg_chan.h"
#include "pg_jwt.h"

#define SECRET "fuzz-hs256-secret"
#define NOW    1700000000

static pg_jwt_keys_t *k_hs, *k_rs, *k_both;
static EVP_PKEY *rsa;
static char *pub_pem;
static size_t pub_pem_len;

static void setup(void)
{
    char err[PG_ERRLEN];
    rsa = EVP_RSA_gen(2048);
    if (!rsa)
        abort();
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_PUBKEY(b, rsa) != 1)
        abort();
    char *p;
    long n = BIO_get_mem_data(b, &p);
    pub_pem = malloc((size_t)n + 1);
    memcpy(pub_pem, p, (size_t)n);
    pub_pem[n] = '\0';
    pub_pem_len = (size_t)n;
    BIO_free(b);
    k_hs = pg_jwt_keys_new(SECRET, NULL, 0, err, sizeof err);
    k_rs = pg_jwt_keys_new(NULL, pub_pem, pub_pem_len, err, sizeof err);
    k_both = pg_jwt_keys_new(SECRET, pub_pem, pub_pem_len, err, sizeof err);
    if (!k_hs || !k_rs || !k_both) {
        fprintf(stderr, "fuzz_token: key setup failed: %s\n", err);
        abort();
    }
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18 & 63]; out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63];  out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = t[v >> 18 & 63]; out[o++] = t[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = t[v >> 18 & 63]; out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

/* header.payload.signature built from "header\npayload", signed per mode. */
static char *build(int mode, const uint8_t *d, size_t n)
{
    const uint8_t *nl = memchr(d, '\n', n);
    size_t hl = nl ? (size_t)(nl - d) : n;
    const uint8_t *pl = nl ? nl + 1 : d + n;
    size_t pll = nl ? n - hl - 1 : 0;
    char *tok = malloc(4 * (n + 3) / 3 + 4 + 700);
    if (!tok)
        return NULL;
    size_t o = b64url(d, hl, tok);
    tok[o++] = '.';
    o += b64url(pl, pll, tok + o);
    unsigned char sig[512];
    size_t siglen = 0;
    if (mode == 1 || mode == 3) {
        unsigned int l = 0;
        const void *key = mode == 1 ? (const void *)SECRET : (const void *)pub_pem;
        int kl = mode == 1 ? (int)strlen(SECRET) : (int)pub_pem_len;
        if (!HMAC(EVP_sha256(), key, kl, (unsigned char *)tok, o, sig, &l))
            abort();
        siglen = l;
    } else {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        siglen = sizeof sig;
        if (!c || EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, rsa) != 1 ||
            EVP_DigestSign(c, sig, &siglen, (unsigned char *)tok, o) != 1)
            abort();
        EVP_MD_CTX_free(c);
    }
    tok[o++] = '.';
    b64url(sig, siglen, tok + o);
    return tok;
}

static int verify(const pg_jwt_keys_t *k, const char *tok)
{
    pg_identity_t id;
    char err[PG_ERRLEN];
    memset(err, 'x', sizeof err);
    int rc = pg_jwt_verify(k, tok, NOW, &id, err, sizeof err);
    if (rc == 0) {
        if (id.sub) {
            char ch[PG_CHAN_MAX + 64];
            int l = snprintf(ch, sizeof ch, "user:%s", id.sub);
            if (l < 0 || (size_t)l >= sizeof ch || pg_chan_kind(ch) != PG_CHAN_USER)
                abort(); /* sub must make a valid user channel */
        }
        for (size_t i = 0; i < id.channels.n; i++)
            if (!id.channels.v[i])
                abort();
        if (id.exp != 0 && id.exp <= NOW)
            abort(); /* expired yet accepted */
        pg_identity_free(&id);
        return 0;
    }
    if (rc != -1 || memchr(err, '\0', sizeof err) == NULL)
        abort();
    /* The reason must never echo the token back (it may end up in a log). */
    if (strlen(tok) >= 16 && strstr(err, tok))
        abort();
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!k_hs)
        setup();
    if (size < 1 || size > 4096)
        return 0;
    int mode = data[0] & 3;
    char *tok;
    if (mode == 0) {
        tok = malloc(size);
        if (!tok)
            return 0;
        memcpy(tok, data + 1, size - 1);
        tok[size - 1] = '\0';
    } else {
        tok = build(mode, data + 1, size - 1);
        if (!tok)
            return 0;
    }
    int hs = verify(k_hs, tok);
    int rs = verify(k_rs, tok);
    int both = verify(k_both, tok);
    if (mode == 0 || mode == 3) {
        if (rs == 0)
            abort(); /* verified with the RSA key, yet nobody here signed it with RSA */
    }
    if (mode == 1 && rs == 0)
        abort(); /* an HS256 token against a key set without the secret */
    if (mode == 2 && hs == 0)
        abort(); /* an RS256 token against a secret-only key set */
    if (hs == 0 && both != 0)
        abort(); /* adding a key may not break what the secret accepts */
    free(tok);
    return 0;
}
