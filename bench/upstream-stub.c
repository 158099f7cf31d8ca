/* upstream-stub: a stand-in for the national population database, used by the tests, the demo
 * and the benchmarks.
 *   GET  /api/v1/citizens/{12 digits}  → 200 with a ~600-byte JSON record (000… → 404)
 *   POST /api/v1/citizens/verify       → {"match": true|false}
 * Per-request test behaviours: "X-Stub-Delay-Ms: N" and "X-Stub-Mode: M" with M one of
 *   close-mid-body, cl-and-te, dup-cl, no-length, chunked, interim-100, status-101, huge-head,
 *   never, close, reset.
 * With --log FILE every request received is appended as one JSON line holding its raw bytes in
 * hex, so tests can check exactly what reached the upstream. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

static FILE *log_file;
static unsigned long conn_counter; /* accepted connections, for the log */

struct sconn {
    struct bufferevent *bev;
    http_parser parser;
    struct evbuffer *raw;  /* bytes of the current message */
    char url[2048];
    size_t url_len;
    char field[128];       /* current header name */
    size_t field_len;
    int in_value;
    int delay_ms;
    char mode[64];
    struct evbuffer *body;
    int complete;          /* a message is complete, waiting for its response */
    int busy;              /* response delayed */
    int closing;
    struct event *timer;
    unsigned long id;      /* connection number, logged so tests can see reuse */
};

static void respond(struct sconn *c);

static int on_begin(http_parser *p)
{
    struct sconn *c = p->data;
    c->url_len = 0;
    c->field_len = 0;
    c->in_value = 0;
    c->delay_ms = 0;
    c->mode[0] = '\0';
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct sconn *c = p->data;
    if (c->url_len + len < sizeof c->url) {
        memcpy(c->url + c->url_len, at, len);
        c->url_len += len;
    }
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct sconn *c = p->data;
    if (c->in_value)
        c->field_len = 0;
    c->in_value = 0;
    if (c->field_len + len < sizeof c->field) {
        memcpy(c->field + c->field_len, at, len);
        c->field_len += len;
    }
    c->field[c->field_len] = '\0';
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct sconn *c = p->data;
    c->in_value = 1;
    char v[64];
    size_t n = len < sizeof v - 1 ? len : sizeof v - 1;
    memcpy(v, at, n);
    v[n] = '\0';
    if (strcasecmp(c->field, "x-stub-delay-ms") == 0)
        c->delay_ms = atoi(v);
    else if (strcasecmp(c->field, "x-stub-mode") == 0)
        snprintf(c->mode, sizeof c->mode, "%s", v);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct sconn *c = p->data;
    evbuffer_add(c->body, at, len);
    return 0;
}

static int on_complete(http_parser *p)
{
    struct sconn *c = p->data;
    c->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void sconn_free(struct sconn *c)
{
    bufferevent_free(c->bev);
    evbuffer_free(c->raw);
    evbuffer_free(c->body);
    event_free(c->timer);
    free(c);
}

static void log_request(struct sconn *c)
{
    if (log_file == NULL)
        return;
    size_t n = evbuffer_get_length(c->raw);
    const unsigned char *raw = evbuffer_pullup(c->raw, (ev_ssize_t)n);
    char *hex = xmalloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "method",
                          http_method_str((enum http_method)c->parser.method), "url", c->url,
                          "raw_hex", hex, "conn", (json_int_t)c->id);
    char *line = json_dumps(o, JSON_COMPACT);
    if (line) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
    free(line);
    json_decref(o);
    free(hex);
}

/* A deterministic fake citizen for an ID. */
static void citizen_of(const char *id, char *name, size_t nl, char *dob, size_t dl,
                       const char **sex)
{
    static const char *const family[] = {"Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ"};
    static const char *const given[] = {"Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng",
                                        "Thu Hà", "Đức Long"};
    unsigned h = 0;
    for (const char *p = id; *p; p++)
        h = h * 31 + (unsigned char)*p;
    snprintf(name, nl, "%s %s", family[h % 6], given[(h / 6) % 6]);
    snprintf(dob, dl, "%04u-%02u-%02u", 1950 + h % 55, 1 + (h / 7) % 12, 1 + (h / 11) % 28);
    *sex = (h & 1) ? "Nam" : "Nữ";
}

static int is_citizen_id(const char *s, size_t len)
{
    if (len != 12)
        return 0;
    for (size_t i = 0; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static void build_body(struct sconn *c, int *status, struct evbuffer *body)
{
    const char *prefix = "/api/v1/citizens/";
    size_t pl = strlen(prefix);
    char name[64], dob[16];
    const char *sex;
    if (c->parser.method == HTTP_GET && strncmp(c->url, prefix, pl) == 0) {
        const char *id = c->url + pl;
        size_t idlen = strcspn(id, "?");
        if (!is_citizen_id(id, idlen)) {
            *status = 400;
            evbuffer_add_printf(body, "{\"error\":\"invalid id\"}");
            return;
        }
        char ids[13];
        memcpy(ids, id, 12);
        ids[12] = '\0';
        if (strncmp(ids, "000", 3) == 0) {
            *status = 404;
            evbuffer_add_printf(body, "{\"error\":\"not found\"}");
            return;
        }
        citizen_of(ids, name, sizeof name, dob, sizeof dob, &sex);
        *status = 200;
        evbuffer_add_printf(
            body,
            "{\"so_dinh_danh\":\"%s\",\"ho_ten\":\"%s\",\"ngay_sinh\":\"%s\","
            "\"gioi_tinh\":\"%s\",\"quoc_tich\":\"Việt Nam\",\"dan_toc\":\"Kinh\","
            "\"que_quan\":{\"tinh\":\"Tỉnh Nam Định\",\"huyen\":\"Huyện Hải Hậu\","
            "\"xa\":\"Xã Hải Vân\"},"
            "\"noi_thuong_tru\":{\"tinh\":\"Thành phố Hà Nội\",\"huyen\":\"Quận Cầu Giấy\","
            "\"xa\":\"Phường Dịch Vọng\",\"chi_tiet\":\"Số 12, ngõ 34, đường Trần Thái Tông\"},"
            "\"cha\":{\"ho_ten\":\"Nguyễn Văn Bình\"},\"me\":{\"ho_ten\":\"Trần Thị Cúc\"},"
            "\"tinh_trang_hon_nhan\":\"Đã kết hôn\",\"nguon\":\"upstream-stub\"}",
            ids, name, dob, sex);
        return;
    }
    if (c->parser.method == HTTP_POST && strcmp(c->url, "/api/v1/citizens/verify") == 0) {
        size_t n = evbuffer_get_length(c->body);
        json_error_t err;
        json_t *in = json_loadb((const char *)evbuffer_pullup(c->body, (ev_ssize_t)n), n, 0, &err);
        const char *id = in ? json_string_value(json_object_get(in, "so_dinh_danh")) : NULL;
        const char *hn = in ? json_string_value(json_object_get(in, "ho_ten")) : NULL;
        const char *bd = in ? json_string_value(json_object_get(in, "ngay_sinh")) : NULL;
        if (id == NULL || hn == NULL || bd == NULL || !is_citizen_id(id, strlen(id))) {
            *status = 400;
            evbuffer_add_printf(body, "{\"error\":\"expected so_dinh_danh, ho_ten, ngay_sinh\"}");
        } else {
            citizen_of(id, name, sizeof name, dob, sizeof dob, &sex);
            *status = 200;
            evbuffer_add_printf(body, "{\"match\":%s}",
                                strcmp(name, hn) == 0 && strcmp(dob, bd) == 0 ? "true" : "false");
        }
        json_decref(in);
        return;
    }
    *status = 404;
    evbuffer_add_printf(body, "{\"error\":\"no such route\"}");
}

static void respond(struct sconn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer *body = evbuffer_new();
    int status;
    build_body(c, &status, body);
    size_t blen = evbuffer_get_length(body);
    const char *mode = c->mode;
    const char *reason = http_status_str((enum http_status)status);
    int keep = http_should_keep_alive(&c->parser);
    if (strcmp(mode, "close") == 0 || strcmp(mode, "reset") == 0) {
        if (strcmp(mode, "reset") == 0) {
            struct linger lg = {1, 0};
            setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        c->closing = 1;
    } else if (strcmp(mode, "never") == 0) {
        /* say nothing */
    } else if (strcmp(mode, "status-101") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\n\r\n");
    } else if (strcmp(mode, "cl-and-te") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n%zx\r\n", blen, blen);
        evbuffer_add_buffer(out, body);
        evbuffer_add_printf(out, "\r\n0\r\n\r\n");
    } else if (strcmp(mode, "dup-cl") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nContent-Length: %zu\r\n\r\n",
                            blen, blen + 1);
        evbuffer_add_buffer(out, body);
    } else if (strcmp(mode, "huge-head") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < 200; i++)
            evbuffer_add_printf(out, "X-Filler-%d: %d\r\n", i, i);
        evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", blen);
        evbuffer_add_buffer(out, body);
    } else if (strcmp(mode, "close-mid-body") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                 "Content-Length: %zu\r\n\r\n", status, reason, blen + 1000);
        evbuffer_add_buffer(out, body);
        c->closing = 1;
    } else if (strcmp(mode, "no-length") == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n\r\n",
                            status, reason);
        evbuffer_add_buffer(out, body);
        c->closing = 1;
    } else {
        if (strcmp(mode, "interim-100") == 0)
            evbuffer_add_printf(out, "HTTP/1.1 100 Continue\r\n\r\n");
        evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                 "X-Upstream: stub\r\n",
                            status, reason);
        if (!keep)
            evbuffer_add_printf(out, "Connection: close\r\n");
        if (strcmp(mode, "hop-and-big") == 0) {
            /* A field the Connection header names (not relayed), and one larger than the
             * proxy's 2 KiB copy buffer between two small ones (relayed, in order). */
            evbuffer_add_printf(out, "Connection: keep-alive, X-Hop-One\r\nX-Hop-One: secret\r\n"
                                     "X-Before: 1\r\nX-Big: ");
            for (int i = 0; i < 3000; i++)
                evbuffer_add(out, "b", 1);
            evbuffer_add_printf(out, "\r\nX-After: 2\r\n");
        }
        if (strcmp(mode, "chunked") == 0) {
            evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n\r\n%zx\r\n", blen);
            evbuffer_add_buffer(out, body);
            evbuffer_add_printf(out, "\r\n0\r\n\r\n");
        } else {
            evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", blen);
            if (c->parser.method != HTTP_HEAD)
                evbuffer_add_buffer(out, body);
        }
        if (!keep)
            c->closing = 1;
    }
    evbuffer_free(body);
}

static void process(struct sconn *c);

static void delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *c = arg;
    (void)fd;
    (void)what;
    c->busy = 0;
    respond(c);
    if (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        sconn_free(c);
        return;
    }
    process(c);
}

/* Parses buffered input; answers complete messages in order. */
static void process(struct sconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->busy && !c->closing && evbuffer_get_length(in) > 0) {
        size_t len = evbuffer_get_length(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
        size_t n = http_parser_execute(&c->parser, &settings, data, len);
        evbuffer_add(c->raw, data, n);
        evbuffer_drain(in, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            evbuffer_add_printf(bufferevent_get_output(c->bev),
                                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n");
            c->closing = 1;
            return;
        }
        if (!c->complete)
            return;
        c->complete = 0;
        http_parser_pause(&c->parser, 0);
        log_request(c);
        evbuffer_drain(c->raw, evbuffer_get_length(c->raw));
        if (c->delay_ms > 0 || strcmp(c->mode, "never") == 0) {
            c->busy = 1;
            if (strcmp(c->mode, "never") != 0) {
                struct timeval tv = {c->delay_ms / 1000, (c->delay_ms % 1000) * 1000};
                evtimer_add(c->timer, &tv);
            }
            return;
        }
        respond(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct sconn *c = arg;
    (void)bev;
    process(c);
    if (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        sconn_free(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct sconn *c = arg;
    (void)bev;
    if (c->closing)
        sconn_free(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    sconn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int sl,
                      void *arg)
{
    struct event_base *base = arg;
    (void)l;
    (void)sa;
    (void)sl;
    struct sconn *c = xcalloc(1, sizeof *c);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->raw = evbuffer_new();
    c->body = evbuffer_new();
    c->timer = evtimer_new(base, delay_cb, c);
    c->id = ++conn_counter;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    int port = 9000;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
            log_file = fopen(argv[++i], "a");
            if (log_file == NULL) {
                perror("upstream-stub: --log");
                return 1;
            }
        } else {
            fprintf(stderr, "usage: upstream-stub [--host ADDR] [--port N] [--log FILE]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        fprintf(stderr, "upstream-stub: bad host %s\n", host);
        return 2;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(base, accept_cb, base, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, (struct sockaddr *)&sin, sizeof sin);
    if (l == NULL) {
        fprintf(stderr, "upstream-stub: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        return 1;
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    fprintf(stderr, "upstream-stub listening on %s:%d\n", host, port);
    event_base_dispatch(base);
    event_free(sigterm);
    event_free(sigint);
    evconnlistener_free(l);
    event_base_free(base);
    if (log_file)
        fclose(log_file);
    return 0;
}
