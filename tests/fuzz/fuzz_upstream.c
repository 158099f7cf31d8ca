/* The upstream response path: the input (after its first byte, which seeds the split points)
 * is what "the national database" answers, sent in pieces over a real loopback connection to
 * the real pool (its socket reader, http-parser, the framing checks and the header filter).
 * Whatever the bytes:
 * - the request ends exactly once;
 * - an answer (status != 0) has a final status 200..599, header lines that are each
 *   "Name: value\r\n" with no CR, LF or NUL inside and no hop-by-hop or framing field (the
 *   gateway writes its own), and a body within the limit;
 * - otherwise the error is 502 or 504 with a reason. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/upstream.h"
#include "tests/fuzz/fuzz.h"

#define BODY_LIMIT 4096

static struct event_base *base;
static evutil_socket_t lfd = -1;
static struct cfg_upstream ucfg;
static struct cfg_limits lim;

struct feed {
    evutil_socket_t fd;     /* the accepted connection (the "upstream" side) */
    const uint8_t *data;
    size_t len, pos;
    struct fuzz_splits sp;
    struct event *ev;
    int done;               /* the request ended */
    int ends;               /* how many times it ended */
};

static void setup(void)
{
    log_init(LOG_LVL_ERROR, NULL); /* the pool's info lines would be most of the time */
    base = event_base_new();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
               listen(lfd, 16) == 0 && getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    ucfg.host = "127.0.0.1";
    ucfg.port = ntohs(sa.sin_port);
    ucfg.pool_size = 1;
    ucfg.queue_size = 1;
    ucfg.queue_timeout_ms = 2000;
    ucfg.connect_timeout_ms = 2000;
    ucfg.response_timeout_ms = 2000;
    ucfg.idle_timeout_ms = 2000;
    ucfg.max_requests_per_connection = 100;
    lim.response_head_bytes = 2048;
    lim.response_header_count = 32;
    lim.response_body_bytes = BODY_LIMIT;
}

static void feed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct feed *f = arg;
    (void)fd;
    (void)what;
    if (f->fd < 0) { /* accept the pool's connection */
        f->fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (f->fd < 0) {
            struct timeval again = {0, 1000};
            event_add(f->ev, &again);
            return;
        }
    }
    if (f->pos < f->len) {
        size_t n = fuzz_next_piece(&f->sp, 64);
        if (n > f->len - f->pos)
            n = f->len - f->pos;
        ssize_t w = send(f->fd, f->data + f->pos, n, MSG_NOSIGNAL);
        if (w > 0)
            f->pos += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            f->pos = f->len; /* the pool closed: nothing more to send */
        struct timeval next = {0, 0};
        event_add(f->ev, &next);
        return;
    }
    close(f->fd); /* all sent: the response ends here (EOF) */
    f->fd = -2;
}

static void done_cb(struct up_request *r)
{
    struct feed *f = r->arg;
    f->ends++;
    f->done = 1;
}

static void check_headers(struct evbuffer *h)
{
    size_t len = evbuffer_get_length(h);
    if (len == 0)
        return;
    const char *p = (const char *)evbuffer_pullup(h, -1), *end = p + len;
    static const char *const banned[] = {"connection", "transfer-encoding", "content-length",
                                         "keep-alive", "upgrade", "te", "trailer",
                                         "proxy-connection"};
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        FUZZ_CHECK(eol != NULL && eol + 1 < end && eol[1] == '\n');
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        FUZZ_CHECK(colon != NULL && colon > p && colon + 1 < eol && colon[1] == ' ');
        FUZZ_CHECK(memchr(p, '\n', (size_t)(eol - p)) == NULL);
        FUZZ_CHECK(memchr(p, '\0', (size_t)(eol - p)) == NULL);
        for (size_t i = 0; i < ARRAY_LEN(banned); i++)
            FUZZ_CHECK(!ascii_eq_nocase(p, (size_t)(colon - p), banned[i]));
        p = eol + 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    if (base == NULL)
        setup();
    char err[256];
    struct upstream_pool *pool = upstream_pool_new(base, &ucfg, &lim, NULL, err, sizeof err);
    FUZZ_CHECK(pool != NULL);
    struct feed f = {.fd = -1, .data = data + 1, .len = size - 1};
    fuzz_splits_init(&f.sp, data[0]);
    f.ev = event_new(base, lfd, EV_READ, feed_cb, &f);
    event_add(f.ev, NULL);

    struct up_request r;
    memset(&r, 0, sizeof r);
    r.bytes = evbuffer_new();
    r.resp_hdrs = evbuffer_new();
    r.resp_body = evbuffer_new();
    r.done = done_cb;
    r.arg = &f;
    evbuffer_add(r.bytes, "GET /api/v1/citizens/079123456789 HTTP/1.1\r\nHost: up\r\n\r\n", 56);
    upstream_send(pool, &r);
    for (int i = 0; i < 100000 && !(f.done && f.fd == -2); i++)
        event_base_loop(base, EVLOOP_ONCE);
    FUZZ_CHECK(f.ends == 1);
    if (r.result.status != 0) {
        FUZZ_CHECK(r.result.status >= 200 && r.result.status <= 599);
        FUZZ_CHECK(evbuffer_get_length(r.resp_body) <= BODY_LIMIT);
        check_headers(r.resp_hdrs);
    } else {
        FUZZ_CHECK(r.result.error == 502 || r.result.error == 504);
        FUZZ_CHECK(r.result.reason != NULL);
    }
    event_free(f.ev);
    if (f.fd >= 0)
        close(f.fd);
    upstream_pool_free(pool);
    event_base_loop(base, EVLOOP_NONBLOCK);
    evbuffer_free(r.bytes);
    evbuffer_free(r.resp_hdrs);
    evbuffer_free(r.resp_body);
    return 0;
}
