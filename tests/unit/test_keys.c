/* test_keys.c - the keyring: key lists, key files, PEM and JWKS files, API
 * keys, reloads. pg_keys.c runs on the counting allocator (leaks and the
 * out-of-memory paths are checked); pg_jwt.c and this file use the real one,
 * since they hand memory to and from libjwt. Keys are generated at run time
 * with OpenSSL and written to a temporary directory, so nothing secret is
 * checked in. */
#define PG_TEST_ALLOC_IMPL   /* the counters only: this file's malloc stays libc's */
#include "test_alloc.h"

#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include "pg_keys.h"
#include "test_keypair.h"

#define NOW 1800000000LL

static keypair_t rsa1, rsa2, ec1;
static char dir[64];
static char err[PG_ERRLEN];

/* dir/name, in a static slot (a few live at once). */
static const char *path_of(const char *name)
{
    static char slots[64][160];
    static unsigned next;
    char *p = slots[next++ % 64];
    snprintf(p, 160, "%s/%s", dir, name);
    return p;
}

static const char *put(const char *name, const char *text, size_t len)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    return p;
}

static const char *puts_(const char *name, const char *text)
{
    return put(name, text, strlen(text));
}

static char *b64bn(EVP_PKEY *pk, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
    unsigned char buf[1024];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* A JWKS text: rsa1 as kid "r1", ec1 as kid "e1", and an oct key "h1"
 * holding "jwks-secret". */
static char *jwks_doc(void)
{
    char *n = b64bn(rsa1.pkey, OSSL_PKEY_PARAM_RSA_N, 0), *e = b64bn(rsa1.pkey, OSSL_PKEY_PARAM_RSA_E, 0);
    char *x = b64bn(ec1.pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32), *y = b64bn(ec1.pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    char *k = b64url((const unsigned char *)"jwks-secret", 11);
    char *o = malloc(8192);
    snprintf(o, 8192,
             "\r\n  {\"keys\": [\n"
             "  {\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"},\n"
             "  {\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},\n"
             "  {\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"%s\"}\n]}\n",
             n, e, x, y, k);
    free(n);
    free(e);
    free(x);
    free(y);
    free(k);
    return o;
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pg_keys_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (make_pair(&rsa1, EVP_RSA_gen(2048)) || make_pair(&rsa2, EVP_RSA_gen(2048))
        || make_pair(&ec1, EVP_EC_gen("P-256")))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free_pair(&rsa1);
    free_pair(&rsa2);
    free_pair(&ec1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A token from libjwt: alg, signing key (secret or private PEM), kid (NULL
 * = none), sub. */
static char *mint(jwt_alg_t alg, const char *key, const char *kid, const char *sub)
{
    jwt_t *j = NULL;
    char claims[128];
    snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"exp\":%lld}", sub, NOW + 60);
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

/* 1 when the keyring accepts a token signed with key (for sub "u"). */
static int takes(const pg_keys_t *k, jwt_alg_t alg, const char *key, const char *kid)
{
    char *t = mint(alg, key, kid, "u");
    pg_identity_t id;
    char why[PG_ERRLEN];
    int rc = pg_jwt_verify(pg_keys_jwt(k), t, NOW, &id, why, sizeof why);
    if (rc == 0) {
        assert_string_equal(id.sub, "u");
        pg_identity_free(&id);
    }
    free(t);
    return rc == 0;
}

static pg_keys_t *load(const pg_config_t *cfg)
{
    pg_keys_t *k = (pg_keys_t *)1;
    err[0] = '\0';
    if (pg_keys_load(cfg, &k, err, sizeof err) != 0)
        fail_msg("load refused: %s", err);
    assert_non_null(k);
    return k;
}

/* The load must fail with every string of want in err, err one line, *out
 * NULL; nothing leaks (cmocka checks at the end of the test). */
static void refused(const pg_config_t *cfg, const char *want1, const char *want2)
{
    pg_keys_t *k = (pg_keys_t *)1;
    err[0] = '\0';
    if (pg_keys_load(cfg, &k, err, sizeof err) != -1) {
        pg_keys_free(k);
        fail_msg("load accepted, want \"%s\"", want1);
    }
    assert_null(k);
    assert_null(strchr(err, '\n'));
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("err \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
}

static void no_keys(void **state)
{
    (void)state;
    pg_config_t cfg = {0};
    pg_keys_t *k = load(&cfg);
    assert_null(pg_keys_jwt(k));
    assert_int_equal(pg_keys_jwt_count(k), 0);
    assert_int_equal(pg_keys_has_api(k), 0);
    assert_int_equal(pg_keys_api_count(k), 0);
    assert_int_equal(pg_keys_api_ok(k, "", 0), 0);
    assert_int_equal(pg_keys_api_ok(k, "x", 1), 0);
    pg_keys_free(k);
    pg_keys_free(NULL);
    assert_null(pg_keys_jwt(NULL));
    assert_int_equal(pg_keys_api_ok(NULL, "x", 1), 0);
    assert_int_equal(pg_keys_has_api(NULL), 0);
}

static void secret_list(void **state)
{
    (void)state;
    pg_config_t cfg = { .jwt_secret = "old-secret, new-secret,,\tthird " };
    pg_keys_t *k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 3);
    assert_true(takes(k, JWT_ALG_HS256, "old-secret", NULL));
    assert_true(takes(k, JWT_ALG_HS256, "new-secret", NULL));
    assert_true(takes(k, JWT_ALG_HS256, "third", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "other", NULL));
    assert_false(takes(k, JWT_ALG_HS256, " new-secret", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "old-secret, new-secret", NULL));
    assert_false(takes(k, JWT_ALG_RS256, rsa1.priv, NULL));
    assert_int_equal(pg_keys_has_api(k), 0);
    pg_keys_free(k);
    cfg.jwt_secret = " , ,";
    refused(&cfg, "--jwt-secret: the list holds no key", NULL);
}

static void secret_file(void **state)
{
    (void)state;
    const char *f = puts_("secrets",
                          "# rotated 2025-01: old first\n"
                          "\n"
                          "old-secret\r\n"
                          "   \t\n"
                          "#new-secret-commented\n"
                          "with inner space \n"
                          "last-no-newline");
    pg_config_t cfg = { .jwt_secret_file = (char *)f };
    pg_keys_t *k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 3);
    assert_true(takes(k, JWT_ALG_HS256, "old-secret", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "old-secret\r", NULL));
    assert_true(takes(k, JWT_ALG_HS256, "with inner space ", NULL));   /* exact bytes */
    assert_false(takes(k, JWT_ALG_HS256, "with inner space", NULL));
    assert_true(takes(k, JWT_ALG_HS256, "last-no-newline", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "#new-secret-commented", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "new-secret-commented", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "# rotated 2025-01: old first", NULL));
    pg_keys_free(k);

    /* With --jwt-secret too: both sources count. */
    cfg.jwt_secret = "flag-secret";
    k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 4);
    assert_true(takes(k, JWT_ALG_HS256, "flag-secret", NULL));
    assert_true(takes(k, JWT_ALG_HS256, "old-secret", NULL));
    pg_keys_free(k);
    cfg.jwt_secret = NULL;

    /* A file written on Windows, one key. */
    cfg.jwt_secret_file = (char *)puts_("crlf", "# c\r\n\r\nwin-secret\r\n");
    k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 1);
    assert_true(takes(k, JWT_ALG_HS256, "win-secret", NULL));
    pg_keys_free(k);

    const char *empty = puts_("empty", "");
    cfg.jwt_secret_file = (char *)empty;
    refused(&cfg, "--jwt-secret-file: \"", "/empty\" holds no key");
    cfg.jwt_secret_file = (char *)puts_("comments", "# only\n\n  \r\n#comments\n");
    refused(&cfg, "--jwt-secret-file:", "holds no key");
    cfg.jwt_secret_file = (char *)put("nul", "abc\0def\n", 8);
    refused(&cfg, "--jwt-secret-file:", "NUL byte");
    cfg.jwt_secret_file = (char *)path_of("missing");
    refused(&cfg, "--jwt-secret-file: cannot read \"", "missing\": No such file");
    cfg.jwt_secret_file = dir;
    refused(&cfg, "--jwt-secret-file: cannot read", "Is a directory");
    /* Too large to be a key file. */
    char *big = malloc((1u << 20) + 10);
    memset(big, 'a', (1u << 20) + 10);
    cfg.jwt_secret_file = (char *)put("big", big, (1u << 20) + 10);
    free(big);
    refused(&cfg, "--jwt-secret-file:", "larger than 1 MiB");
}

static void public_files(void **state)
{
    (void)state;
    char *doc = jwks_doc();
    const char *rsa_pem = puts_("rsa2.pem", rsa2.pub);
    const char *jwks = puts_("keys.json", doc);
    /* A JWKS an editor saved with a byte order mark. */
    char bom[8300];
    snprintf(bom, sizeof bom, "\xEF\xBB\xBF%s", doc);
    const char *jwks_bom = puts_("bom.json", bom);
    free(doc);
    char list[512];
    snprintf(list, sizeof list, "%s, %s", rsa_pem, jwks);
    pg_config_t cfg = { .jwt_public_key = list };
    pg_keys_t *k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 4);
    /* The PEM key (no kid) takes tokens without kid. */
    assert_true(takes(k, JWT_ALG_RS256, rsa2.priv, NULL));
    assert_false(takes(k, JWT_ALG_RS256, rsa2.priv, "r1"));
    /* JWKS keys by kid and without. */
    assert_true(takes(k, JWT_ALG_RS256, rsa1.priv, "r1"));
    assert_true(takes(k, JWT_ALG_RS256, rsa1.priv, NULL));
    assert_true(takes(k, JWT_ALG_ES256, ec1.priv, "e1"));
    assert_false(takes(k, JWT_ALG_ES256, ec1.priv, "r1"));
    assert_true(takes(k, JWT_ALG_HS256, "jwks-secret", "h1"));
    assert_true(takes(k, JWT_ALG_HS256, "jwks-secret", NULL));
    assert_false(takes(k, JWT_ALG_HS256, "jwks-secret", "zz"));
    pg_keys_free(k);

    cfg.jwt_public_key = (char *)jwks_bom;
    k = load(&cfg);
    assert_int_equal(pg_keys_jwt_count(k), 3);
    pg_keys_free(k);

    /* Every file is named in its own error. */
    const char *empty = puts_("empty.pem", " \n\r\n");
    snprintf(list, sizeof list, "%s,%s", rsa_pem, empty);
    cfg.jwt_public_key = list;
    refused(&cfg, "--jwt-public-key: \"", "/empty.pem\": the file is empty");
    cfg.jwt_public_key = (char *)puts_("junk.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    refused(&cfg, "/junk.pem\": not a PEM public key", NULL);
    cfg.jwt_public_key = (char *)puts_("priv.pem", rsa1.priv);
    refused(&cfg, "/priv.pem\": not a PEM public key", NULL);
    cfg.jwt_public_key = (char *)puts_("trunc.json", "{\"keys\":[");
    refused(&cfg, "--jwt-public-key: \"", "/trunc.json\": not a JWKS");
    cfg.jwt_public_key = (char *)puts_("okp.json", "{\"keys\":[{\"kty\":\"OKP\",\"kid\":\"ed\",\"x\":\"AA\"}]}");
    refused(&cfg, "/okp.json\": key 1 (kid \"ed\"): kty \"OKP\" is not supported", NULL);
    cfg.jwt_public_key = (char *)puts_("enc.json", "{\"keys\":[{\"kty\":\"oct\",\"use\":\"enc\",\"k\":\"c2VjcmV0\"}]}");
    refused(&cfg, "/enc.json\": the JWKS holds no signing key", NULL);
    cfg.jwt_public_key = (char *)puts_("badoct.json", "{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS384\",\"k\":\"c2VjcmV0LXZhbHVl\"}]}");
    refused(&cfg, "alg \"HS384\"", NULL);
    assert_null(strstr(err, "c2VjcmV0LXZhbHVl"));
    snprintf(list, sizeof list, "%s,%s/nope.json", rsa_pem, dir);
    cfg.jwt_public_key = list;
    refused(&cfg, "--jwt-public-key: cannot read \"", "/nope.json\": No such file");
    cfg.jwt_public_key = " , ";
    refused(&cfg, "--jwt-public-key: the list names no file", NULL);
}

static void api_keys(void **state)
{
    (void)state;
    const char *f = puts_("api", "# ops team\r\nfile-key-1\r\n\n#commented-key\nfile-key-2");
    pg_config_t cfg = { .api_key = "flag-key, other-key", .api_key_file = (char *)f };
    pg_keys_t *k = load(&cfg);
    assert_null(pg_keys_jwt(k));
    assert_int_equal(pg_keys_has_api(k), 1);
    assert_int_equal(pg_keys_api_count(k), 4);
    const char *yes[] = { "flag-key", "other-key", "file-key-1", "file-key-2" };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pg_keys_api_ok(k, yes[i], strlen(yes[i])), 1);
    const char *no[] = { "", "flag-ke", "flag-key ", "flag-keyx", "file-key-1\r", "#commented-key",
                         "commented-key", "# ops team", "flag-key, other-key", "FLAG-KEY" };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (pg_keys_api_ok(k, no[i], strlen(no[i])))
            fail_msg("accepted API key \"%s\"", no[i]);
    assert_int_equal(pg_keys_api_ok(k, NULL, 0), 0);
    /* The length given counts, not a NUL. */
    assert_int_equal(pg_keys_api_ok(k, "flag-key-and-more", 8), 1);
    assert_int_equal(pg_keys_api_ok(k, "flag-key", 7), 0);
    pg_keys_free(k);

    pg_config_t only_file = { .api_key_file = (char *)f };
    k = load(&only_file);
    assert_int_equal(pg_keys_api_count(k), 2);
    assert_int_equal(pg_keys_api_ok(k, "flag-key", 8), 0);
    assert_int_equal(pg_keys_api_ok(k, "file-key-2", 10), 1);
    pg_keys_free(k);

    pg_config_t bad = { .api_key = "," };
    refused(&bad, "--api-key: the list holds no key", NULL);
    bad.api_key = NULL;
    bad.api_key_file = (char *)puts_("api-empty", "\n# nothing\n");
    refused(&bad, "--api-key-file: \"", "api-empty\" holds no key");
}

static void errors_hold_no_secret(void **state)
{
    (void)state;
    const char *f = puts_("s1", "file-hunter2\n");
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    pg_config_t cfg = { .jwt_secret = "flag-hunter2", .jwt_secret_file = (char *)f,
                        .api_key = "api-hunter2", .jwt_public_key = missing };
    refused(&cfg, "--jwt-public-key", "none.pem");
    assert_null(strstr(err, "hunter2"));
    cfg.jwt_public_key = NULL;
    cfg.api_key_file = (char *)puts_("a-empty", "#\n");
    refused(&cfg, "--api-key-file", NULL);
    assert_null(strstr(err, "hunter2"));
}

static void reload_reads_fresh(void **state)
{
    (void)state;
    const char *f = puts_("rot", "gen-1\n");
    const char *pub = puts_("rot.pem", rsa1.pub);
    pg_config_t cfg = { .jwt_secret_file = (char *)f, .jwt_public_key = (char *)pub };
    pg_keys_t *live = load(&cfg);
    assert_true(takes(live, JWT_ALG_HS256, "gen-1", NULL));
    assert_true(takes(live, JWT_ALG_RS256, rsa1.priv, NULL));

    /* Rotation: the new key is added beside the old, then the old removed. */
    puts_("rot", "gen-2\ngen-1\n");
    puts_("rot.pem", rsa2.pub);
    pg_keys_t *next = load(&cfg);
    assert_true(takes(next, JWT_ALG_HS256, "gen-1", NULL));
    assert_true(takes(next, JWT_ALG_HS256, "gen-2", NULL));
    assert_true(takes(next, JWT_ALG_RS256, rsa2.priv, NULL));
    assert_false(takes(next, JWT_ALG_RS256, rsa1.priv, NULL));
    /* The keyring loaded before is untouched by the files changing. */
    assert_false(takes(live, JWT_ALG_HS256, "gen-2", NULL));
    assert_true(takes(live, JWT_ALG_RS256, rsa1.priv, NULL));
    pg_keys_free(live);
    live = next;

    /* A failed reload gives nothing; the caller keeps the live keyring. */
    puts_("rot.pem", "garbage");
    puts_("rot", "gen-3\n");
    refused(&cfg, "--jwt-public-key", "rot.pem\": not a PEM public key");
    assert_true(takes(live, JWT_ALG_HS256, "gen-2", NULL));
    assert_false(takes(live, JWT_ALG_HS256, "gen-3", NULL));
    pg_keys_free(live);
}

static void out_of_memory(void **state)
{
    (void)state;
    char *doc = jwks_doc();
    const char *jwks = puts_("oom.json", doc);
    free(doc);
    const char *pem = puts_("oom.pem", ec1.pub);
    char list[400];
    snprintf(list, sizeof list, "%s,%s", pem, jwks);
    pg_config_t cfg = { .jwt_secret = "a,b", .jwt_secret_file = (char *)puts_("oom-s", "c\nd\n"),
                        .jwt_public_key = list, .api_key = "k1,k2,k3,k4,k5",
                        .api_key_file = (char *)puts_("oom-a", "k6\n") };
    int ran = 0, failed = 0;
    for (long n = 0; n < 40; n++) {
        pg_test_fail_after = n;
        pg_keys_t *k = (pg_keys_t *)1;
        int rc = pg_keys_load(&cfg, &k, err, sizeof err);
        pg_test_fail_after = -1;
        if (rc == 0) {
            ran++;
            assert_int_equal(pg_keys_jwt_count(k), 2 + 2 + 1 + 3);
            assert_int_equal(pg_keys_api_count(k), 6);
            pg_keys_free(k);
        } else {
            failed++;
            assert_null(k);
            if (!strstr(err, "out of memory"))
                fail_msg("allocation %ld: \"%s\"", n, err);
        }
    }
    assert_true(ran > 0);
    assert_true(failed > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_keys),
        cmocka_unit_test(secret_list),
        cmocka_unit_test(secret_file),
        cmocka_unit_test(public_files),
        cmocka_unit_test(api_keys),
        cmocka_unit_test(errors_hold_no_secret),
        cmocka_unit_test(reload_reads_fresh),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
