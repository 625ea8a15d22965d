/* test_keypair.h - an OpenSSL key pair as PEM text, for the token and
 * keyring tests: keys are generated at run time, so nothing secret is
 * checked in; and the base64url both need for tokens and JWKS. Header-only (static functions): each test executable that
 * includes it gets its own copy. Uses the real malloc. */
#ifndef PG_TEST_KEYPAIR_H
#define PG_TEST_KEYPAIR_H

#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

typedef struct keypair {
    char     *priv;   /* PEM, NUL-terminated */
    char     *pub;
    EVP_PKEY *pkey;
} keypair_t;

/* The memory BIO's text as a malloc'd string; frees b. */
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

/* Fill k from pk (k owns it afterwards). 0, or -1 when pk is NULL. */
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

/* base64url without padding (JWT segments, JWK members); malloc'd. */
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

#endif
