/* test_keypair.h - an OpenSSL key pair as PEM text, for the token and
 * keyring tests: keys are generated at run time, so nothing secret is
 * checked in. Header-only (static functions): each test executable that
 * includes it gets its own copy. Uses the real malloc. */
#ifndef PG_TEST_KEYPAIR_H
#define PG_TEST_KEYPAIR_H

#include <stdlib.h>
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

#endif
