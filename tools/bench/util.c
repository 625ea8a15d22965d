/* pushgate-bench: clocks, random numbers, base64, tokens, /proc, histogram. */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix64(*s);
}

int subst_user(const char *tmpl, long user, char *out, size_t outlen)
{
    size_t n = 0;
    while (*tmpl) {
        if (strncmp(tmpl, "{user}", 6) == 0) {
            int k = snprintf(out + n, outlen - n, "u%ld", user);
            if (k < 0 || (size_t)k >= outlen - n)
                return -1;
            n += (size_t)k;
            tmpl += 6;
            continue;
        }
        if (n + 1 >= outlen)
            return -1;
        out[n++] = *tmpl++;
    }
    out[n] = '\0';
    return 0;
}

struct json_object *json_fixed(double v, int prec)
{
    char b[64];
    snprintf(b, sizeof b, "%.*f", prec, v);
    return json_object_new_double_s(v, b);
}

int ipc_take(struct evbuffer *in, msg_hdr_t *h)
{
    if (evbuffer_get_length(in) < sizeof *h)
        return 0;
    evbuffer_copyout(in, h, sizeof *h);
    if (evbuffer_get_length(in) < sizeof *h + h->len)
        return 0;
    evbuffer_drain(in, sizeof *h);
    return 1;
}

long target_user(const bench_opts_t *o, uint64_t seq)
{
    if (o->target == TGT_USER_FIXED)
        return o->fixed_user;
    if (o->target != TGT_USER_RANDOM || o->users <= 0)
        return -1;
    return (long)(mix64(o->seed ^ (seq * 0x9e3779b97f4a7c15ULL)) % (uint64_t)o->users);
}

size_t b64_encode(const unsigned char *in, size_t n, char *out, int url)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (url) {
        while (len > 0 && out[len - 1] == '=')
            len--;
        out[len] = '\0';
        for (int i = 0; i < len; i++) {
            if (out[i] == '+')
                out[i] = '-';
            else if (out[i] == '/')
                out[i] = '_';
        }
    }
    return (size_t)len;
}

void ws_accept_for(const char *key, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int n = snprintf(buf, sizeof buf, "%s%s", key, guid);
    EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    b64_encode(md, mdlen, out, 0);
}

/* The channels claim lists the names in channels= of the connect path, so a
 * topic run works against a gateway that guards its topics by token. */
static size_t channels_claim(const char *path, char *out, size_t outlen)
{
    const char *q = strstr(path, "channels=");
    size_t n = 0;
    if (!q || (q[-1] != '?' && q[-1] != '&'))
        return 0;
    q += 9;
    n += (size_t)snprintf(out + n, outlen - n, ",\"channels\":[");
    int first = 1;
    while (*q && *q != '&' && n + 8 < outlen) {
        size_t len = strcspn(q, ",&");
        if (len > 0 && n + len + 8 < outlen) {
            n += (size_t)snprintf(out + n, outlen - n, "%s\"%.*s\"", first ? "" : ",", (int)len, q);
            first = 0;
        }
        q += len;
        if (*q == ',')
            q++;
    }
    n += (size_t)snprintf(out + n, outlen - n, "]");
    return n;
}

int jwt_mint(const bench_opts_t *o, long user, char *out, size_t outlen)
{
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char claims[1024], chans[600] = "";
    char tmp[1500];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    long now = (long)time(NULL);

    channels_claim(o->path, chans, sizeof chans);
    int cl = snprintf(claims, sizeof claims, "{\"sub\":\"u%ld\",\"iat\":%ld,\"exp\":%ld%s}",
                      user, now, now + 86400, chans);
    if (cl < 0 || (size_t)cl >= sizeof claims)
        return -1;
    size_t n = b64_encode((const unsigned char *)hdr, sizeof hdr - 1, tmp, 1);
    tmp[n++] = '.';
    n += b64_encode((const unsigned char *)claims, (size_t)cl, tmp + n, 1);
    if (!HMAC(EVP_sha256(), o->jwt_secret, (int)strlen(o->jwt_secret),
              (const unsigned char *)tmp, n, mac, &maclen))
        return -1;
    if (n + 2 + 4 * ((maclen + 2) / 3) >= outlen)
        return -1;
    memcpy(out, tmp, n);
    out[n++] = '.';
    n += b64_encode(mac, maclen, out + n, 1);
    out[n] = '\0';
    return 0;
}

int64_t proc_cpu_us(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may hold spaces and parentheses: fields count from the last ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 2; /* field 3: state */
    unsigned long long ut = 0, st = 0;
    /* fields 3..13 skipped, then utime (14) and stime (15) */
    if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (int64_t)((ut + st) * 1000000ULL / (unsigned long long)hz);
}

int64_t proc_sched_ns(pid_t pid, int64_t *wait_ns)
{
    char path[300], buf[128];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int64_t sum = 0, wsum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            sum += strtoll(buf, &end, 10);
            wsum += strtoll(end, NULL, 10);
        }
        fclose(f);
    }
    closedir(d);
    if (wait_ns)
        *wait_ns = wsum;
    return sum;
}

int64_t proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int64_t kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

void say(const bench_opts_t *o, const char *fmt, ...)
{
    if (o && o->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("pushgate-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- histogram ---- */

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

static uint64_t bucket_mid(unsigned idx)
{
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t mant = idx % HIST_SUB + HIST_SUB;
    uint64_t lo = mant << shift, width = (uint64_t)1 << shift;
    return lo + width / 2;
}

void hist_add(hist_t *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist_t *into, const hist_t *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) {
            uint64_t v = bucket_mid(i);
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}
