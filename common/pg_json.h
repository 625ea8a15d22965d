/* pg_json.h - strict JSON parsing shared by envelopes, client commands,
 * token headers and claims, and API bodies, so all of them agree on what
 * JSON is: the whole input one value, valid UTF-8 (json-c's own check lets
 * overlongs through), no NUL, no NaN/Infinity, no integer json-c would
 * silently clamp, nesting at most depth levels. */
#ifndef PG_JSON_H
#define PG_JSON_H

#include <stddef.h>
#include <json-c/json.h>

/* Parse s[0..len). Returns 1 and sets *out (the caller owns it; NULL for a
 * JSON null), or 0 when it is not such JSON; *too_deep (if not NULL) says
 * whether the nesting limit was the reason. */
int pg_json_parse(const char *s, size_t len, int depth, json_object **out, int *too_deep);
/* The same, but only a JSON object is accepted. NULL otherwise. */
json_object *pg_json_parse_object(const char *s, size_t len, int depth, int *too_deep);

#endif
