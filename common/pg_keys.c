/* pg_keys.c - the keyring: JWT keys and API keys from options and files.
 *
 * Built whole or not at all: pg_keys_load either returns a complete keyring
 * or frees everything it made, so a SIGHUP reload can run it beside the
 * live keyring and swap only on success (SPEC §7: a failed reload keeps all
 * the old keys). Nothing here is shared or mutated after the load, so no
 * reference counting: the caller swaps pointers on its one thread and frees
 * the old keyring, and the identities verified with it own copies. */
#include "pg_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest key file we read: a JWKS of a few dozen RSA keys is tens of KB. */
#define KEYFILE_MAX (1u << 20)

typedef struct apikey {
    char   *v;     /* NUL-terminated; never holds a NUL (see file_has_nul) */
    size_t  len;
} apikey_t;

struct pg_keys {
    pg_jwt_keys_t *jwt;    /* NULL = no JWT key */
    apikey_t      *api;
    size_t         napi, capi;
};

/* A path as it may appear in the error line: its last 64 bytes (the file's
 * name is the part that tells which key file failed), unprintable bytes and
 * quotes as '?', so the line stays one line. */
static const char *shown(const char *v, char buf[80])
{
    size_t o = 0, n = strlen(v), i = n > 64 ? n - 64 : 0;
    if (i > 0) {
        memcpy(buf, "...", 3);
        o = 3;
    }
    for (; v[i]; i++) {
        unsigned char c = (unsigned char)v[i];
        buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    buf[o] = '\0';
    return buf;
}

/* The whole file, NUL-terminated, in *out (free with drop_file). Returns 0,
 * or -1 with err "<opt>: cannot read "<path>": <why>". */
static int read_keyfile(const char *opt, const char *path, char **out, size_t *outlen,
                        char *err, size_t errlen)
{
    char sb[80];
    FILE *f = fopen(path, "rb");
    if (!f) {
        pg_errf(err, errlen, "%s: cannot read \"%s\": %s", opt, shown(path, sb), strerror(errno));
        return -1;
    }
    char *buf = malloc(KEYFILE_MAX + 1);
    if (!buf) {
        fclose(f);
        pg_errf(err, errlen, "%s: out of memory", opt);
        return -1;
    }
    errno = 0;
    size_t n = fread(buf, 1, KEYFILE_MAX + 1, f);
    int eno = ferror(f) ? (errno ? errno : EIO) : n > KEYFILE_MAX ? EFBIG : 0;
    fclose(f);
    if (eno) {
        explicit_bzero(buf, n < KEYFILE_MAX ? n : KEYFILE_MAX);
        free(buf);
        pg_errf(err, errlen, "%s: cannot read \"%s\": %s", opt, shown(path, sb),
               eno == EFBIG ? "larger than 1 MiB" : strerror(eno));
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* Key files hold secrets: wipe before freeing. */
static void drop_file(char *buf, size_t len)
{
    if (!buf)
        return;
    explicit_bzero(buf, len);
    free(buf);
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    return 1;
}

/* The next key line of buf[*pos..n): one a line, a trailing \r dropped
 * (files written on Windows), blank lines and lines starting with '#'
 * skipped. Spaces inside or around a key are kept: a key file is how
 * Kubernetes mounts a secret, byte for byte. Returns 1 with [*line, *len),
 * 0 at the end. */
static int next_line(const char *buf, size_t n, size_t *pos, const char **line, size_t *len)
{
    while (*pos < n) {
        const char *s = buf + *pos;
        const char *nl = memchr(s, '\n', n - *pos);
        size_t l = nl ? (size_t)(nl - s) : n - *pos;
        *pos += l + (nl ? 1 : 0);
        if (l > 0 && s[l - 1] == '\r')
            l--;
        if (l == 0 || s[0] == '#' || blank(s, l))
            continue;
        *line = s;
        *len = l;
        return 1;
    }
    return 0;
}

static int push_api(pg_keys_t *k, const char *v, size_t len)
{
    if (k->napi == k->capi) {
        size_t cap = k->capi ? k->capi * 2 : 4;
        apikey_t *a = realloc(k->api, cap * sizeof *a);
        if (!a)
            return -1;
        k->api = a;
        k->capi = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return -1;
    memcpy(c, v, len);
    c[len] = '\0';
    k->api[k->napi].v = c;
    k->api[k->napi].len = len;
    k->napi++;
    return 0;
}

/* One key from a list or file: an HS256 secret (jwt set) or an API key. */
static int add_one(pg_keys_t *k, pg_jwt_keys_t *jwt, const char *v, size_t len)
{
    if (jwt)
        return pg_jwt_keys_add_hs256(jwt, v, len, NULL, NULL, 0);
    return push_api(k, v, len);
}

/* --jwt-secret / --api-key: a comma list of keys. */
static int load_list(pg_keys_t *k, pg_jwt_keys_t *jwt, const char *opt, const char *csv,
                     char *err, size_t errlen)
{
    const char *p = csv, *it;
    size_t len, added = 0;
    while (pg_csv_next(&p, &it, &len)) {
        if (len == 0)
            continue;
        if (add_one(k, jwt, it, len) < 0) {
            pg_errf(err, errlen, "%s: out of memory", opt);
            return -1;
        }
        added++;
    }
    if (!added) {
        pg_errf(err, errlen, "%s: the list holds no key", opt);
        return -1;
    }
    return 0;
}

/* --jwt-secret-file / --api-key-file: one key a line. */
static int load_lines(pg_keys_t *k, pg_jwt_keys_t *jwt, const char *opt, const char *path,
                      char *err, size_t errlen)
{
    char *buf, sb[80];
    size_t n, pos = 0, len, added = 0;
    const char *line;
    if (read_keyfile(opt, path, &buf, &n, err, errlen) < 0)
        return -1;
    int rc = -1;
    /* A key with a NUL could never be typed into a header or a token
     * library; a NUL means this is not the key file we were meant to read. */
    if (memchr(buf, '\0', n)) {
        pg_errf(err, errlen, "%s: \"%s\" holds a NUL byte: not a text file of keys", opt, shown(path, sb));
        goto out;
    }
    while (next_line(buf, n, &pos, &line, &len)) {
        if (add_one(k, jwt, line, len) < 0) {
            pg_errf(err, errlen, "%s: out of memory", opt);
            goto out;
        }
        added++;
    }
    if (!added) {
        pg_errf(err, errlen, "%s: \"%s\" holds no key (blank lines and # lines are skipped)", opt,
               shown(path, sb));
        goto out;
    }
    rc = 0;
out:
    drop_file(buf, n);
    return rc;
}

/* --jwt-public-key: a comma list of files, each PEM or JWKS. */
static int load_public(pg_jwt_keys_t *jwt, const char *csv, char *err, size_t errlen)
{
    static const char opt[] = "--jwt-public-key";
    const char *p = csv, *it;
    size_t len, files = 0;
    char sb[80], why[PG_ERRLEN];
    while (pg_csv_next(&p, &it, &len)) {
        if (len == 0)
            continue;
        char *path = strndup(it, len), *buf;
        size_t n;
        if (!path) {
            pg_errf(err, errlen, "%s: out of memory", opt);
            return -1;
        }
        if (read_keyfile(opt, path, &buf, &n, err, errlen) < 0) {
            free(path);
            return -1;
        }
        /* An editor's UTF-8 byte order mark is not part of either format. */
        size_t bom = n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, i = bom;
        while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
            i++;
        int rc;
        if (i == n) {
            snprintf(why, sizeof why, "the file is empty");
            rc = -1;
        } else if (buf[i] == '{') {
            rc = pg_jwt_keys_add_jwks(jwt, buf + bom, n - bom, why, sizeof why);
        } else {
            rc = pg_jwt_keys_add_pem(jwt, buf + bom, n - bom, NULL, why, sizeof why);
        }
        if (rc < 0)
            pg_errf(err, errlen, "%s: \"%s\": %s", opt, shown(path, sb), why);
        drop_file(buf, n);
        free(path);
        if (rc < 0)
            return -1;
        files++;
    }
    if (!files) {
        pg_errf(err, errlen, "%s: the list names no file", opt);
        return -1;
    }
    return 0;
}

int pg_keys_load(const pg_config_t *cfg, pg_keys_t **out, char *err, size_t errlen)
{
    *out = NULL;
    pg_keys_t *k = calloc(1, sizeof *k);
    pg_jwt_keys_t *jwt = pg_jwt_keys_create();
    if (!k || !jwt) {
        pg_errf(err, errlen, "keys: out of memory");
        goto fail;
    }
    if (cfg->jwt_secret && load_list(k, jwt, "--jwt-secret", cfg->jwt_secret, err, errlen) < 0)
        goto fail;
    if (cfg->jwt_secret_file
        && load_lines(k, jwt, "--jwt-secret-file", cfg->jwt_secret_file, err, errlen) < 0)
        goto fail;
    if (cfg->jwt_public_key && load_public(jwt, cfg->jwt_public_key, err, errlen) < 0)
        goto fail;
    if (cfg->api_key && load_list(k, NULL, "--api-key", cfg->api_key, err, errlen) < 0)
        goto fail;
    if (cfg->api_key_file && load_lines(k, NULL, "--api-key-file", cfg->api_key_file, err, errlen) < 0)
        goto fail;
    if (pg_jwt_keys_count(jwt) == 0) {
        pg_jwt_keys_free(jwt);
        jwt = NULL;
    }
    k->jwt = jwt;
    *out = k;
    return 0;
fail:
    pg_jwt_keys_free(jwt);
    pg_keys_free(k);
    return -1;
}

void pg_keys_free(pg_keys_t *k)
{
    if (!k)
        return;
    pg_jwt_keys_free(k->jwt);
    for (size_t i = 0; i < k->napi; i++) {
        explicit_bzero(k->api[i].v, k->api[i].len);
        free(k->api[i].v);
    }
    free(k->api);
    free(k);
}

const pg_jwt_keys_t *pg_keys_jwt(const pg_keys_t *k)
{
    return k ? k->jwt : NULL;
}

size_t pg_keys_jwt_count(const pg_keys_t *k)
{
    return k ? pg_jwt_keys_count(k->jwt) : 0;
}

int pg_keys_api_ok(const pg_keys_t *k, const char *given, size_t len)
{
    if (!k || !given)
        return 0;
    /* No early exit: which key matched, or that the first one did, must not
     * show in the time taken. */
    int ok = 0;
    for (size_t i = 0; i < k->napi; i++)
        ok |= pg_secure_equal(given, len, k->api[i].v, k->api[i].len);
    return ok;
}

int pg_keys_has_api(const pg_keys_t *k)
{
    return k && k->napi > 0;
}

size_t pg_keys_api_count(const pg_keys_t *k)
{
    return k ? k->napi : 0;
}
