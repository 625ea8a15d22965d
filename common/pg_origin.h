/* pg_origin.h - the Origin allow-list of SPEC §1 (--allowed-origins). */
#ifndef PG_ORIGIN_H
#define PG_ORIGIN_H

#include "pg_util.h"

/* May a request with this Origin header (NULL = none) and Host header (NULL =
 * none) connect?
 * - no Origin header: always allowed (not a browser);
 * - list contains "*": allowed;
 * - list entry equal to origin (scheme://host[:port], case-insensitive): allowed;
 * - wildcard entry "scheme:" "//" "*.example.com[:port]" (written as one word;
 *   split here only because a slash-star would end this comment): any origin of that scheme whose host
 *   ends in ".example.com" (one or more labels before it; not example.com);
 * - empty list: allowed only if origin's host[:port] equals Host
 *   (case-insensitive; a default port :80/:443 may be omitted on either side).
 * Returns 1 allowed, 0 refused. A malformed origin is refused. */
int pg_origin_allowed(const pg_strlist_t *allowed, const char *origin, const char *host);

#endif
