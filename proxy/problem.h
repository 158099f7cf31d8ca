/* Refusals as RFC 9457 problem details (application/problem+json): short, machine-readable,
 * with a stable type per refusal kind and no internal detail (no addresses, no stack). */
#ifndef LG_PROBLEM_H
#define LG_PROBLEM_H

#include <stddef.h>

struct evbuffer;

/* The reason phrase for a status code ("Bad Request"). */
const char *http_reason_phrase(int status);

/* The problem type slug used for a status when the caller has no more specific one. */
const char *problem_default_type(int status);

/* Appends a complete response to out: status line, Content-Type, Content-Length, X-Request-Id,
 * Connection (close or keep-alive), extra_headers (each ending in CRLF, or NULL) and the body
 * {"type","title","status","detail","request_id"} plus extra_members (",\"k\":v" JSON text
 * already escaped, or NULL). type is a slug ("bad-request"). */
void problem_write(struct evbuffer *out, int status, const char *type, const char *detail,
                   const char *request_id, int close, const char *extra_headers,
                   const char *extra_members, int head_only);
/* Escapes s as the inside of a JSON string into out (NUL-terminated, truncated to fit). */
void problem_json_escape(char *out, size_t outlen, const char *s);

#endif
