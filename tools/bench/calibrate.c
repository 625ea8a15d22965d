/* pushgate-bench --calibrate: the floor of this machine for a push gateway's
 * hot path, with no gateway and no event library in the way. N loopback TCP
 * pairs; a child process holds the accepted ends and reads them with epoll
 * (as a real client would), the parent writes one small WebSocket text frame
 * to each of the N sockets with write(2), then 8 frames per write(2). Sender
 * CPU comes from getrusage (and CLOCK_PROCESS_CPUTIME_ID), wall time from
 * CLOCK_MONOTONIC, and "all delivered" from the child's clock (the same
 * CLOCK_MONOTONIC) when it has read every byte of the round.
 *
 * Then the relay: the floor of user-targeted traffic, where each message
 * arrives alone and goes to one connection. A feeder process writes a small
 * message every 1/RELAY_RATE s over one loopback TCP connection (Redis's
 * place); the sender, asleep in epoll_wait, wakes, reads it and writes one
 * frame to one of the N connections. Its CPU per message is what one
 * wake-up, one read and one write cost on this machine. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define BATCH 8

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s) < 0)
        perror("sched_setaffinity");
}

static int read_full(int fd, void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = read(fd, (char *)p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        off += (size_t)k;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, (const char *)p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        off += (size_t)k;
    }
    return 0;
}

/* The receiving side: accept n, then read everything; each time the total
 * reaches the target the parent set, answer with the time it happened. */
static void receiver(int lfd, int ctl, long n, int cpu) __attribute__((noreturn));
static void receiver(int lfd, int ctl, long n, int cpu)
{
    pin(cpu);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, evs[512];
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = ctl;
    epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
    long accepted = 0;
    uint64_t total = 0, target = 0;
    static char buf[1 << 16];
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            _exit(1);
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                    if (++accepted == n) {
                        uint64_t a = (uint64_t)accepted;
                        write_full(ctl, &a, sizeof a);
                    }
                }
            } else if (fd == ctl) {
                if (read_full(ctl, &target, sizeof target) < 0)
                    _exit(0);
            } else {
                ssize_t r;
                while ((r = read(fd, buf, sizeof buf)) > 0)
                    total += (uint64_t)r;
                if (r == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
            }
            if (target && total >= target) {
                uint64_t now = mono_ns();
                write_full(ctl, &now, sizeof now);
                target = 0;
            }
        }
    }
}

typedef struct round {
    double cpu_us, user_us, sys_us, wall_us, deliver_us;
} round_t;

static uint64_t tv_us(struct timeval tv) { return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec; }

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int one_round(int *fds, long n, const char *buf, size_t len, int ctl, uint64_t *sent_total,
                     round_t *r)
{
    struct rusage a, b;
    uint64_t target = *sent_total + (uint64_t)n * len, done;
    if (write_full(ctl, &target, sizeof target) < 0)
        return -1;
    getrusage(RUSAGE_SELF, &a);
    uint64_t c0 = cpu_ns(), t0 = mono_ns();
    for (long i = 0; i < n; i++) {
        if (write(fds[i], buf, len) != (ssize_t)len)
            return -1;
    }
    uint64_t t1 = mono_ns(), c1 = cpu_ns();
    getrusage(RUSAGE_SELF, &b);
    if (read_full(ctl, &done, sizeof done) < 0)
        return -1;
    *sent_total = target;
    r->cpu_us = (double)(c1 - c0) / 1e3;
    r->user_us = (double)(tv_us(b.ru_utime) - tv_us(a.ru_utime));
    r->sys_us = (double)(tv_us(b.ru_stime) - tv_us(a.ru_stime));
    r->wall_us = (double)(t1 - t0) / 1e3;
    r->deliver_us = done > t0 ? (double)(done - t0) / 1e3 : 0;
    return 0;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Per-variant summary: medians over the rounds, divided per send and per message. */
static json_object *summarize(round_t *rs, int rounds, long n, int per_write)
{
    double cpu[1000], user[1000], sys[1000], wall[1000], del[1000];
    for (int i = 0; i < rounds; i++) {
        cpu[i] = rs[i].cpu_us;
        user[i] = rs[i].user_us;
        sys[i] = rs[i].sys_us;
        wall[i] = rs[i].wall_us;
        del[i] = rs[i].deliver_us;
    }
    double mc = median(cpu, rounds), mu = median(user, rounds), ms = median(sys, rounds);
    double mw = median(wall, rounds), md = median(del, rounds);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "frames_per_write", json_object_new_int(per_write));
    json_object_object_add(o, "cpu_us_per_send", json_fixed(mc / (double)n, 3));
    json_object_object_add(o, "cpu_us_per_msg", json_fixed(mc / (double)n / per_write, 3));
    json_object_object_add(o, "rusage_user_us_per_send", json_fixed(mu / (double)n, 3));
    json_object_object_add(o, "rusage_sys_us_per_send", json_fixed(ms / (double)n, 3));
    json_object_object_add(o, "wall_us_per_send", json_fixed(mw / (double)n, 3));
    json_object_object_add(o, "wall_ms_send_all", json_fixed(mw / 1e3, 3));
    json_object_object_add(o, "wall_ms_delivered_all", json_fixed(md / 1e3, 3));
    json_object_object_add(o, "sends_per_s", json_fixed(mw > 0 ? (double)n / (mw / 1e6) : 0, 0));
    json_object_object_add(o, "msgs_per_s", json_fixed(mw > 0 ? (double)n * per_write / (mw / 1e6) : 0, 0));
    qsort(cpu, (size_t)rounds, sizeof *cpu, cmp_d);
    json_object_object_add(o, "cpu_us_per_send_min", json_fixed(cpu[0] / (double)n, 3));
    json_object_object_add(o, "cpu_us_per_send_max", json_fixed(cpu[rounds - 1] / (double)n, 3));
    return o;
}

#define RELAY_RATE 1000
#define RELAY_MSGS 2000
#define RELAY_REC 64   /* bytes per fed message */

/* The feeder: RELAY_MSGS records, each at its own due time, then EOF. */
static void feeder(int fd, int cpu) __attribute__((noreturn));
static void feeder(int fd, int cpu)
{
    pin(cpu);
    char rec[RELAY_REC];
    memset(rec, 'x', sizeof rec);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (long i = 0; i < RELAY_MSGS; i++) {
        t.tv_nsec += 1000000000L / RELAY_RATE;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_nsec -= 1000000000L;
            t.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
            ;
        if (write_full(fd, rec, sizeof rec) < 0)
            _exit(1);
    }
    _exit(0);
}

/* Relay until the feeder's EOF: wake, read, write one frame to connection
 * i % n. Returns the messages relayed; *cpu_us and *wakes are filled. */
static long relay(int *fds, long n, const char *frame, size_t flen, int cpu_feed,
                  double *cpu_us, long *wakes)
{
    /* one loopback TCP connection, as Redis's would be */
    int sp[2] = {-1, -1}, one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    sa.sin_addr.s_addr = htonl(0x7f000001);
    sp[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || sp[1] < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 ||
        connect(sp[1], (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (sp[0] = accept(lfd, NULL, NULL)) < 0) {
        if (lfd >= 0)
            close(lfd);
        if (sp[1] >= 0)
            close(sp[1]);
        return -1;
    }
    close(lfd);
    setsockopt(sp[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t pid = fork();
    if (pid < 0) {
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (pid == 0) {
        close(sp[0]);
        feeder(sp[1], cpu_feed);
    }
    close(sp[1]);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, out[4];
    ev.data.fd = sp[0];
    epoll_ctl(ep, EPOLL_CTL_ADD, sp[0], &ev);
    char buf[RELAY_REC * 64];
    size_t have = 0;
    long msgs = 0;
    *wakes = 0;
    uint64_t c0 = cpu_ns();
    for (;;) {
        int k = epoll_wait(ep, out, 4, -1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            break;
        (*wakes)++;
        ssize_t r = read(sp[0], buf + have, sizeof buf - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        for (; have >= RELAY_REC; have -= RELAY_REC) {
            if (write(fds[msgs % n], frame, flen) != (ssize_t)flen)
                goto out;
            msgs++;
        }
    }
out:
    *cpu_us = (double)(cpu_ns() - c0) / 1e3;
    close(ep);
    close(sp[0]);
    waitpid(pid, NULL, 0);
    return msgs;
}

int calibrate_main(const bench_opts_t *o)
{
    long n = o->connections;
    int rounds = o->cal_rounds > 1000 ? 1000 : o->cal_rounds;
    size_t flen = (size_t)o->cal_frame;
    struct rlimit rl;

    if (n < 1 || n > 19000) {
        fprintf(stderr, "pushgate-bench: --calibrate takes 1..19000 connections\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* an unmasked server->client text frame, as a gateway would send it */
    char frame[128], batch[128 * BATCH];
    size_t plen = flen - 2;
    int k = snprintf(frame + 2, sizeof frame - 2, "{\"channel\":\"broadcast\",\"id\":\"1700000000000001\",\"data\":{\"seq\":1");
    while ((size_t)k < plen - 2)
        frame[2 + k++] = ' ';
    frame[2 + k++] = '}';
    frame[2 + k++] = '}';
    frame[0] = (char)0x81;
    frame[1] = (char)plen;
    for (int i = 0; i < BATCH; i++)
        memcpy(batch + (size_t)i * flen, frame, flen);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    socklen_t sl = sizeof sa;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("listen");
        return 1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        receiver(lfd, sv[1], n, o->cal_cpu_recv);
    }
    close(sv[1]);
    close(lfd);
    int ctl = sv[0];
    pin(o->cal_cpu_send);

    int *fds = calloc((size_t)n, sizeof *fds);
    say(o, "calibrate: %ld loopback connections, %zu byte frames, %d rounds", n, flen, rounds);
    uint64_t tc0 = mono_ns();
    for (long i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* spread over source addresses so N never runs out of ports */
        setsockopt(fds[i], IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % 4));
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&src, sizeof src) < 0 ||
            connect(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("calibrate connect");
            kill(pid, SIGKILL);
            return 1;
        }
    }
    uint64_t acc;
    if (read_full(ctl, &acc, sizeof acc) < 0) {
        fprintf(stderr, "pushgate-bench: receiver died\n");
        return 1;
    }
    double setup_s = (double)(mono_ns() - tc0) / 1e9;

    round_t *single = calloc((size_t)rounds, sizeof *single);
    round_t *batched = calloc((size_t)rounds, sizeof *batched);
    uint64_t sent_total = 0;
    round_t warm;
    /* one warm-up pass of each: first writes grow socket buffers */
    if (one_round(fds, n, frame, flen, ctl, &sent_total, &warm) < 0 ||
        one_round(fds, n, batch, flen * BATCH, ctl, &sent_total, &warm) < 0)
        goto fail;
    for (int r = 0; r < rounds; r++) {
        usleep(20000);
        if (one_round(fds, n, frame, flen, ctl, &sent_total, &single[r]) < 0)
            goto fail;
        usleep(20000);
        if (one_round(fds, n, batch, flen * BATCH, ctl, &sent_total, &batched[r]) < 0)
            goto fail;
    }
    double relay_cpu = 0;
    long relay_wakes = 0;
    long relayed = relay(fds, n, frame, flen, o->cal_cpu_recv, &relay_cpu, &relay_wakes);
    if (relayed < RELAY_MSGS)
        goto fail;
    for (long i = 0; i < n; i++)
        close(fds[i]);
    close(ctl);
    waitpid(pid, NULL, 0);

    json_object *j = json_object_new_object();
    json_object_object_add(j, "tool", json_object_new_string("pushgate-bench"));
    json_object_object_add(j, "version", json_object_new_string(BENCH_VERSION));
    json_object_object_add(j, "mode", json_object_new_string("calibrate"));
    if (o->label)
        json_object_object_add(j, "label", json_object_new_string(o->label));
    json_object_object_add(j, "connections", json_object_new_int64(n));
    json_object_object_add(j, "frame_bytes", json_object_new_int((int)flen));
    json_object_object_add(j, "rounds", json_object_new_int(rounds));
    json_object_object_add(j, "cpu_send", json_object_new_int(o->cal_cpu_send));
    json_object_object_add(j, "cpu_recv", json_object_new_int(o->cal_cpu_recv));
    json_object_object_add(j, "setup_s", json_fixed(setup_s, 3));
    json_object_object_add(j, "single", summarize(single, rounds, n, 1));
    json_object_object_add(j, "batched8", summarize(batched, rounds, n, BATCH));
    json_object *rj = json_object_new_object();
    json_object_object_add(rj, "rate", json_object_new_int(RELAY_RATE));
    json_object_object_add(rj, "messages", json_object_new_int64(relayed));
    json_object_object_add(rj, "wakeups_per_msg", json_fixed((double)relay_wakes / (double)relayed, 3));
    json_object_object_add(rj, "cpu_us_per_msg", json_fixed(relay_cpu / (double)relayed, 3));
    json_object_object_add(j, "relay", rj);
    printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    free(single);
    free(batched);
    free(fds);
    return 0;
fail:
    fprintf(stderr, "pushgate-bench: calibrate round failed: %s\n", strerror(errno));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 1;
}
