/* pg_json.c - the one strict JSON parse every input path uses. */
#include <stdint.h>
#include <string.h>

#include "pg_buf.h"
#include "pg_json.h"

/* json-c accepts NaN, Infinity and -Infinity even in strict mode; JSON does
 * not, and a browser's JSON.parse would choke on the delivery. Doubles keep
 * their source text, so a number is valid iff that text starts like one.
 * Integers are checked for json-c's silent clamping. */
static int json_numbers_ok(json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_double: {
        const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (*t == '-')
            t++;
        return *t >= '0' && *t <= '9';
    }
    case json_type_int:
        /* json-c clamps integers it cannot hold to INT64_MIN / UINT64_MAX
         * without saying so. Rather than deliver a silently different
         * number, such a payload goes out as text, which loses nothing
         * (the cost: exactly those two values also arrive as text). */
        return json_object_get_int64(o) != INT64_MIN && json_object_get_uint64(o) != UINT64_MAX;
    case json_type_array: {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++)
            if (!json_numbers_ok(json_object_array_get_idx(o, i)))
                return 0;
        return 1;
    }
    case json_type_object: {
        json_object_object_foreach(o, k, v) {
            (void)k;
            if (!json_numbers_ok(v))
                return 0;
        }
        return 1;
    }
    default:
        return 1;
    }
}

int pg_json_parse(const char *s, size_t len, int depth, json_object **out, int *too_deep)
{
    *out = NULL;
    if (too_deep)
        *too_deep = 0;
    /* json-c's VALIDATE_UTF8 lets overlongs and code points past U+10FFFF
     * through, so check the bytes ourselves first. A raw NUL is never valid
     * JSON, and json-c would take it for the end of input. */
    if (len > INT32_MAX || memchr(s, '\0', len) || !pg_utf8_valid(s, len))
        return 0;
    struct json_tokener *tok = json_tokener_new_ex(depth);
    if (!tok)
        return 0;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (e == json_tokener_continue) {
        /* A bare number (or an incomplete document) at the end of input:
         * json-c waits for more. Feeding the terminating NUL finishes the
         * number and turns an incomplete document into an error. */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
    }
    /* With STRICT, json-c itself refuses anything but whitespace after the
     * value, so success here means the whole payload was consumed. */
    json_tokener_free(tok);
    if (e == json_tokener_error_depth && too_deep)
        *too_deep = 1;
    if (e != json_tokener_success) {
        json_object_put(o);
        return 0;
    }
    if (o && !json_numbers_ok(o)) {
        json_object_put(o);
        return 0;
    }
    *out = o;
    return 1;
}

json_object *pg_json_parse_object(const char *s, size_t len, int depth, int *too_deep)
{
    json_object *o;
    if (!pg_json_parse(s, len, depth, &o, too_deep))
        return NULL;
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}
