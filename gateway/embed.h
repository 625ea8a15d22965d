/* embed.h - files compiled into the binary by CMake (cmake/embed.cmake):
 * the Redis function library template and the demo page. */
#ifndef PG_EMBED_H
#define PG_EMBED_H

#include <stddef.h>

extern const char   pg_embed_functions_lua[];
extern const size_t pg_embed_functions_lua_len;
extern const char   pg_embed_index_html[];
extern const size_t pg_embed_index_html_len;
extern const char   pg_embed_pushgate_js[];
extern const size_t pg_embed_pushgate_js_len;

#endif
