/* control.c - orders and revocations. See control.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "control.h"
#include "commands.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

typedef struct revocation {
    UT_hash_handle hh;
    int64_t        at;        /* unix second of the revocation */
    char           user[];    /* the key */
} revocation_t;

static revocation_t      *revoked;
static pg_control_hooks_t hooks;
static unsigned           reload_gen;   /* a newer reload makes older replies stale */
static int                loaded_once;  /* pg_control_loaded() */

static void set_revoked(const char *user, int64_t at)
{
    revocation_t *r = NULL;
    HASH_FIND_STR(revoked, user, r);
    if (r == NULL) {
        size_t n = strlen(user);
        if ((r = calloc(1, sizeof(*r) + n + 1)) == NULL) {
            pg_log(PG_LOG_ERROR, "out of memory recording a revocation of user %s", user);
            return;
        }
        memcpy(r->user, user, n + 1);
        HASH_ADD_STR(revoked, user, r);
    }
    if (at > r->at)
        r->at = at;
}

static void clear_all(void)
{
    revocation_t *r, *tmp;
    HASH_ITER(hh, revoked, r, tmp) {
        HASH_DEL(revoked, r);
        free(r);
    }
}

void pg_control_init(const pg_control_hooks_t *h)
{
    hooks = *h;
}

void pg_control_free(void)
{
    clear_all();
}

int pg_control_revoked(const char *user, int64_t iat, int64_t now)
{
    revocation_t *r = NULL;
    if (user == NULL)
        return 0;
    HASH_FIND_STR(revoked, user, r);
    if (r == NULL)
        return 0;
    if (r->at + (int64_t)pg_node.cfg.revoke_ttl <= now) {
        /* lapsed: the function removes it from Redis on its next call */
        HASH_DEL(revoked, r);
        free(r);
        return 0;
    }
    return iat <= r->at;
}

void pg_control_order(const char *payload, size_t len)
{
    pg_order_t o;
    char err[PG_ERRLEN];
    if (pg_order_parse(payload, len, &o, err, sizeof(err)) != 0) {
        pg_node.metrics.control_orders_invalid_total++;
        pg_log(PG_LOG_WARN, "ignored a control order: %s", err);
        return;
    }
    pg_node.metrics.control_orders_total++;
    if (o.type == PG_ORDER_DISCONNECT && o.revoked_at > 0)
        set_revoked(o.user, o.revoked_at);
    if (hooks.order != NULL)
        hooks.order(&o);
}

static void loaded(void *arg, int ok, const char **fields, const char **values, size_t n)
{
    if ((unsigned)(uintptr_t)arg != reload_gen)
        return;          /* a newer reload is on its way */
    loaded_once = 1;
    if (!ok) {
        pg_log(PG_LOG_WARN, "could not load the revocations; keeping the copy in memory");
        return;
    }
    /* Orders applied meanwhile are in the hash too: the function writes it
     * before it publishes, in one step. */
    clear_all();
    for (size_t i = 0; i < n; i++) {
        uint64_t at;
        char chan[PG_CHAN_MAX + 1];
        if (pg_atou64(values[i], (size_t)-1, &at) != 0 || pg_chan_user(fields[i], chan) != 0)
            continue;
        set_revoked(fields[i], (int64_t)at);
    }
    pg_log(PG_LOG_DEBUG, "loaded %zu revocations", n);
    if (hooks.reloaded != NULL)
        hooks.reloaded();
}

int pg_control_loaded(void)
{
    return loaded_once;
}

void pg_control_reload(void)
{
    reload_gen++;
    if (pg_commands_hgetall("revoked", loaded, (void *)(uintptr_t)reload_gen) != 0)
        pg_log(PG_LOG_WARN, "could not ask for the revocations");
}
