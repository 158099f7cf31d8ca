/* Building problem+json responses. */
#include "proxy/problem.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

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
    char body[1536], d[512], id[96];
    problem_json_escape(d, sizeof d, detail ? detail : "");
    problem_json_escape(id, sizeof id, request_id ? request_id : "");
    int blen = snprintf(body, sizeof body,
                        "{\"type\":\"urn:lookupgate:problem:%s\",\"title\":\"%s\",\"status\":%d,"
                        "\"detail\":\"%s\",\"request_id\":\"%s\"%s}\n",
                        type, http_reason_phrase(status), status, d, id,
                        extra_members ? extra_members : "");
    if (blen < 0 || (size_t)blen >= sizeof body)
        blen = (int)strlen(body);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: application/problem+json\r\n"
                        "Content-Length: %d\r\n"
                        "Cache-Control: no-store\r\n"
                        "X-Request-Id: %s\r\n"
                        "%s"
                        "Connection: %s\r\n\r\n",
                        status, http_reason_phrase(status), blen, id,
                        extra_headers ? extra_headers : "", close ? "close" : "keep-alive");
    if (!head_only)
        evbuffer_add(out, body, (size_t)blen);
}
