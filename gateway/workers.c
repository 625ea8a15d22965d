/* workers.c - the supervisor and the workers' shared slots. See workers.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"
#include "node.h"
#include "pg_backoff.h"
#include "pg_log.h"
#include "pg_util.h"

#define CRASH_WINDOW_MS   30000   /* more than CRASH_MAX deaths in this: a crash loop */
#define CRASH_MAX         5
#define RESTART_BASE_MS   100
#define RESTART_CAP_MS    5000
#define STALE_MS          3000    /* a slot older than this is not ready */
#define DRAIN_GRACE_MS    5000    /* past --drain-timeout before workers are killed */

static pg_worker_slot_t *slots;
static uv_timer_t        publish_timer;

unsigned pg_workers_auto(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? (unsigned)n : 1;
}

/* --- the supervisor ------------------------------------------------------- */

typedef struct worker {
    pid_t        pid;          /* 0: not running */
    uint64_t     started_ms;
    uint64_t     restart_at;   /* when to fork again (0: not due) */
    pg_backoff_t backoff;
    int          status;       /* wait status of its last exit */
} worker_t;

/* Fork worker i. Returns 0 in the parent (or -1), and 1 in the child. */
static int spawn(worker_t *w, unsigned i, const sigset_t *oldmask)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        pg_log(PG_LOG_ERROR, "supervisor: fork of worker %u failed: %s", i, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* a worker dies with its supervisor, even after a kill -9 of it */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        return 1;
    }
    w->pid = pid;
    w->started_ms = pg_mono_ms();
    w->restart_at = 0;
    slots[i - 1].pid = pid;
    pg_log(PG_LOG_INFO, "supervisor: worker %u started (pid %d)", i, (int)pid);
    return 0;
}

static void signal_all(worker_t *ws, unsigned n, int sig)
{
    for (unsigned i = 0; i < n; i++)
        if (ws[i].pid > 0)
            kill(ws[i].pid, sig);
}

static unsigned running(const worker_t *ws, unsigned n)
{
    unsigned r = 0;
    for (unsigned i = 0; i < n; i++)
        r += ws[i].pid > 0;
    return r;
}

/* Turn a worker index into a node: its own node id and the shared port. */
static void become_worker(unsigned i, unsigned n)
{
    pg_config_t *cfg = &pg_node.cfg;
    char *id = NULL;
    if (asprintf(&id, "%s-w%u", cfg->node_id, i) < 0)
        _exit(1);
    free(cfg->node_id);
    cfg->node_id = id;
    pg_log_node = cfg->node_id;
    cfg->reuse_port = 1;
    pg_node.worker = i;
    pg_node.nworkers = n;
    pg_node.slots = slots;
}

unsigned pg_workers_run(unsigned n, int *exit_code)
{
    sigset_t set, oldmask;
    worker_t *ws = calloc(n, sizeof(*ws));
    uint64_t deaths[CRASH_MAX + 1];
    unsigned ndeaths = 0;
    int draining = 0, all_clean = 1;
    uint64_t drain_deadline = 0;

    slots = mmap(NULL, n * sizeof(*slots), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ws == NULL || slots == MAP_FAILED) {
        pg_log(PG_LOG_ERROR, "supervisor: cannot allocate the workers' shared memory");
        free(ws);
        *exit_code = 1;
        return 0;
    }
    memset(deaths, 0, sizeof(deaths));
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &oldmask);
    pg_log(PG_LOG_INFO, "supervisor: %u workers on %s", n, pg_node.cfg.listen);

    for (unsigned i = 1; i <= n; i++) {
        pg_backoff_init(&ws[i - 1].backoff, RESTART_BASE_MS, RESTART_CAP_MS);
        if (spawn(&ws[i - 1], i, &oldmask) == 1) {
            free(ws);
            become_worker(i, n);
            return i;
        }
    }

    for (;;) {
        uint64_t now = pg_mono_ms(), wake = now + 1000;
        if (draining && running(ws, n) == 0)
            break;
        if (draining && now >= drain_deadline) {
            pg_log(PG_LOG_ERROR, "supervisor: %u workers still running past the drain timeout: "
                   "killing them", running(ws, n));
            signal_all(ws, n, SIGKILL);
            all_clean = 0;
            drain_deadline = now + 60000;
        }
        for (unsigned i = 1; i <= n && !draining; i++) {
            worker_t *w = &ws[i - 1];
            if (w->pid == 0 && w->restart_at != 0) {
                if (now >= w->restart_at) {
                    if (spawn(w, i, &oldmask) == 1) {
                        free(ws);
                        become_worker(i, n);
                        return i;
                    }
                } else if (w->restart_at < wake) {
                    wake = w->restart_at;
                }
            }
        }
        if (draining && drain_deadline < wake)
            wake = drain_deadline;
        uint64_t ms = wake > now ? wake - now : 0;
        struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig < 0)
            continue;   /* timeout or EINTR: the loop re-checks */
        switch (sig) {
        case SIGHUP:
            pg_log(PG_LOG_INFO, "supervisor: SIGHUP: reloading keys on every worker");
            signal_all(ws, n, SIGHUP);
            break;
        case SIGTERM:
        case SIGINT:
            if (!draining) {
                pg_log(PG_LOG_INFO, "supervisor: signal %d: draining every worker (up to %u s)",
                       sig, pg_node.cfg.drain_timeout);
                draining = 1;
                drain_deadline = pg_mono_ms() + pg_node.cfg.drain_timeout * 1000ull + DRAIN_GRACE_MS;
            } else {
                pg_log(PG_LOG_WARN, "supervisor: second signal: workers stop without waiting");
            }
            signal_all(ws, n, SIGTERM);
            break;
        case SIGCHLD: {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (unsigned i = 1; i <= n; i++) {
                    worker_t *w = &ws[i - 1];
                    if (w->pid != pid)
                        continue;
                    w->pid = 0;
                    w->status = status;
                    memset(&slots[i - 1], 0, sizeof(slots[i - 1]));   /* not ready */
                    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                    if (draining) {
                        if (!clean)
                            all_clean = 0;
                        pg_log(PG_LOG_INFO, "supervisor: worker %u exited (%s %d)", i,
                               WIFEXITED(status) ? "code" : "signal",
                               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                        break;
                    }
                    uint64_t t = pg_mono_ms();
                    if (t - w->started_ms > CRASH_WINDOW_MS)
                        pg_backoff_reset(&w->backoff);   /* it ran a good while */
                    memmove(deaths, deaths + 1, CRASH_MAX * sizeof(*deaths));
                    deaths[CRASH_MAX] = t;
                    if (ndeaths < CRASH_MAX + 1)
                        ndeaths++;
                    if (ndeaths > CRASH_MAX && t - deaths[0] < CRASH_WINDOW_MS) {
                        pg_log(PG_LOG_ERROR, "supervisor: worker %u (pid %d) died (%s %d); "
                               "crash loop: %u workers died within %u s; stopping every worker "
                               "and giving up", i, (int)pid,
                               WIFEXITED(status) ? "exit code" : "signal",
                               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                               CRASH_MAX + 1, CRASH_WINDOW_MS / 1000);
                        draining = 1;
                        all_clean = 0;
                        drain_deadline = t + pg_node.cfg.drain_timeout * 1000ull + DRAIN_GRACE_MS;
                        signal_all(ws, n, SIGTERM);
                        break;
                    }
                    unsigned delay = pg_backoff_next(&w->backoff, pg_backoff_random, NULL);
                    pg_log(PG_LOG_ERROR, "supervisor: worker %u (pid %d) died (%s %d); "
                           "restarting it in %u ms", i, (int)pid,
                           WIFEXITED(status) ? "exit code" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), delay);
                    w->restart_at = t + delay;
                }
            }
            break;
        }
        }
    }
    pg_log(PG_LOG_INFO, "supervisor: every worker stopped%s", all_clean ? "" : " (not all cleanly)");
    free(ws);
    munmap(slots, n * sizeof(*slots));
    slots = NULL;
    *exit_code = all_clean ? 0 : 1;
    return 0;
}

/* --- in a worker ---------------------------------------------------------- */

void pg_workers_publish(void)
{
    if (pg_node.nworkers == 0)
        return;
    pg_worker_slot_t *s = &slots[pg_node.worker - 1];
    /* a seqlock: readers in other processes retry while seq is odd or moved */
    __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELEASE);
    s->metrics = pg_node.metrics;
    s->ready = pg_node_ready_here();
    s->updated_ms = pg_mono_ms();
    __atomic_add_fetch(&s->seq, 1, __ATOMIC_RELEASE);
}

static void publish_cb(uv_timer_t *t)
{
    (void)t;
    pg_workers_publish();
}

int pg_workers_start(void)
{
    if (pg_node.nworkers == 0)
        return 0;
    if (uv_timer_init(pg_node.loop, &publish_timer) != 0)
        return -1;
    pg_workers_publish();
    return uv_timer_start(&publish_timer, publish_cb, 1000, 1000);
}

void pg_workers_stop(void)
{
    if (pg_node.nworkers == 0)
        return;
    uv_timer_stop(&publish_timer);
    uv_close((uv_handle_t *)&publish_timer, NULL);
}

/* A consistent copy of slot i (the seqlock's reader side). */
static void read_slot(unsigned i, pg_worker_slot_t *out)
{
    const pg_worker_slot_t *s = &slots[i];
    for (int tries = 0; tries < 100; tries++) {
        uint32_t a = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (a & 1)
            continue;
        memcpy(out, (const void *)s, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == a)
            return;
    }
    memset(out, 0, sizeof(*out));   /* a writer that never finishes: not ready */
}

int pg_workers_all_ready(void)
{
    uint64_t now = pg_mono_ms();
    pg_worker_slot_t s;
    for (unsigned i = 0; i < pg_node.nworkers; i++) {
        if (i + 1 == pg_node.worker)
            continue;   /* this one answers for itself, live */
        read_slot(i, &s);
        if (!s.ready || now - s.updated_ms > STALE_MS)
            return 0;
    }
    return 1;
}

int pg_workers_render_metrics(pg_buf_t *out)
{
    unsigned n = pg_node.nworkers;
    pg_metrics_t total, *per = calloc(n, sizeof(*per));
    pg_worker_slot_t s;
    if (per == NULL)
        return -1;
    pg_workers_publish();   /* this worker's own numbers are never stale */
    memset(&total, 0, sizeof(total));
    for (unsigned i = 0; i < n; i++) {
        read_slot(i, &s);
        per[i] = s.metrics;
        pg_metrics_add(&total, &per[i]);
    }
    int rc = pg_metrics_render_workers(&total, per, n, out);
    free(per);
    return rc;
}
