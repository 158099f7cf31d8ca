/* Where a key sits in a JSON text. jansson reports line and column only for syntax errors; this
 * scanner finds the position of a value by its path ("upstream.pool_size", "listeners[1].tls")
 * so that every configuration and policy error can name file, line and column. */
#ifndef LG_JSONPOS_H
#define LG_JSONPOS_H

#include <stddef.h>

/* Looks up path in text (which must be valid JSON; jansson has already checked it).
 * On success sets *line and *col (1-based) to the key of an object member, or to the value of
 * an array element, and returns 0. Returns -1 if the path is not there. */
int jsonpos_find(const char *text, size_t len, const char *path, int *line, int *col);

#endif
