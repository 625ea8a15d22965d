/* fuzz_channels - the small string parsers a client or operator reaches:
 * pg_chan_list_parse (channels= query arg), pg_glob_match (public topics,
 * token claims), pg_origin_allowed (Origin and Host headers against the
 * allow-list) and pg_url_parse (redis URL).
 *
 * The input is split at '\n' into up to four NUL-terminated pieces so that
 * every function sees independent strings: a | b | c | d. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_chan.h"
#include "pg_origin.h"
#include "pg_url.h"
#include "pg_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char *piece[4] = { buf, "", "", "" };
    char *p = buf;
    for (int i = 1; i < 4; i++) {
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = piece[i] = nl + 1;
    }

    char err[PG_ERRLEN];
    pg_strlist_t list = { 0 };
    if (pg_chan_list_parse(piece[0], 16, &list, err, sizeof err) == 0) {
        if (list.n > 16)
            abort();
        for (size_t i = 0; i < list.n; i++)
            if (!pg_chan_valid(list.v[i], strlen(list.v[i])))
                abort();
    }
    pg_strlist_free(&list);

    int g = pg_glob_match(piece[0], piece[1]);
    if (g != 0 && g != 1)
        abort();
    if (strchr(piece[0], '*') == NULL && strchr(piece[0], '?') == NULL &&
        g != (strcmp(piece[0], piece[1]) == 0))
        abort(); /* without wildcards a glob is an exact match */
    if (pg_glob_match("*", piece[1]) != 1)
        abort();

    pg_strlist_t allowed = { 0 };
    if (pg_strlist_split(piece[2], &allowed) == 0) {
        int a = pg_origin_allowed(&allowed, piece[0], piece[1]);
        if (a != 0 && a != 1)
            abort();
        if (pg_origin_allowed(&allowed, NULL, piece[1]) != 1)
            abort(); /* no Origin header: not a browser */
        (void)pg_origin_allowed(&allowed, piece[0], NULL);
    }
    pg_strlist_free(&allowed);

    pg_url_t u;
    if (pg_url_parse(piece[3], &u, err, sizeof err) == 0) {
        if (u.port < 1 || u.port > 65535 || u.db < 0)
            abort();
        if (memchr(u.host, '\0', sizeof u.host) == NULL)
            abort();
    } else if (memchr(err, '\0', sizeof err) == NULL) {
        abort();
    }
    free(buf);
    return 0;
}
