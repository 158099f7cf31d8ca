/* Building problem+json responses. */
#include "proxy/problem.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

const char *http_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

const char *problem_default_type(int status)
{
    switch (status) {
    case 400: return "bad-request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 408: return "request-timeout";
    case 413: return "body-too-large";
    case 414: return "uri-too-long";
    case 417: return "expectation-failed";
    case 429: return "quota-exceeded";
    case 431: return "headers-too-large";
    case 502: return "bad-gateway";
    case 503: return "service-unavailable";
    case 504: return "gateway-timeout";
    case 505: return "http-version-not-supported";
    default: return "error";
    }
}

/* Copies s into out as JSON string contents (no quotes), escaping what JSON requires. */
void problem_json_escape(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

void problem_write(struct evbuffer *out, int status, const char *type, const char *detail,
                   const char *request_id, int close, const char *extra_headers,
                   const char *extra_members, int head_only)
{
    /* Built with sbuf, not printf: this is every refusal's path (429 included). */
    char body[1536], head[2048], d[512], id[96];
    problem_json_escape(d, sizeof d, detail ? detail : "");
    problem_json_escape(id, sizeof id, request_id ? request_id : "");
    const char *reason = http_reason_phrase(status);
    struct sbuf b = sb_make(body, sizeof body);
    sb_str(&b, "{\"type\":\"urn:lookupgate:problem:");
    sb_str(&b, type);
    sb_str(&b, "\",\"title\":\"");
    sb_str(&b, reason);
    sb_str(&b, "\",\"status\":");
    sb_int(&b, status);
    sb_str(&b, ",\"detail\":\"");
    sb_str(&b, d);
    sb_str(&b, "\",\"request_id\":\"");
    sb_str(&b, id);
    sb_str(&b, "\"");
    if (extra_members)
        sb_str(&b, extra_members);
    sb_str(&b, "}\n");
    struct sbuf h = sb_make(head, sizeof head);
    sb_str(&h, "HTTP/1.1 ");
    sb_int(&h, status);
    sb_str(&h, " ");
    sb_str(&h, reason);
    sb_str(&h, "\r\nContent-Type: application/problem+json\r\nContent-Length: ");
    sb_int(&h, (int64_t)b.len);
    sb_str(&h, "\r\nCache-Control: no-store\r\nX-Request-Id: ");
    sb_str(&h, id);
    sb_str(&h, "\r\n");
    if (extra_headers)
        sb_str(&h, extra_headers);
    sb_str(&h, close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    evbuffer_add(out, head, h.len);
    if (!head_only)
        evbuffer_add(out, body, b.len);
}
