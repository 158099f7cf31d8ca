/* A mutex-protected chained hash table of address → open connection count. */
#include "proxy/conncap.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define CC_BUCKETS 4096

struct cc_entry {
    struct cc_entry *next; /* chain */
    unsigned char addr[16]; /* IPv4-mapped or IPv6 bytes */
    int count;             /* open connections */
};

struct conncap {
    pthread_mutex_t lock;
    int max;                             /* per address */
    struct cc_entry *buckets[CC_BUCKETS];
};

struct conncap *conncap_new(int per_client_max)
{
    struct conncap *cc = xcalloc(1, sizeof *cc);
    pthread_mutex_init(&cc->lock, NULL);
    cc->max = per_client_max;
    return cc;
}

void conncap_free(struct conncap *cc)
{
    if (cc == NULL)
        return;
    for (int i = 0; i < CC_BUCKETS; i++) {
        struct cc_entry *e = cc->buckets[i];
        while (e) {
            struct cc_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    pthread_mutex_destroy(&cc->lock);
    free(cc);
}

static void key_of(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static unsigned hash_key(const unsigned char key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % CC_BUCKETS;
}

int conncap_acquire(struct conncap *cc, const struct sockaddr *sa)
{
    unsigned char key[16];
    key_of(sa, key);
    unsigned b = hash_key(key);
    int rc = 0;
    pthread_mutex_lock(&cc->lock);
    struct cc_entry *e = cc->buckets[b];
    while (e && memcmp(e->addr, key, 16) != 0)
        e = e->next;
    if (e == NULL) {
        e = xcalloc(1, sizeof *e);
        memcpy(e->addr, key, 16);
        e->next = cc->buckets[b];
        cc->buckets[b] = e;
    }
    if (e->count >= cc->max)
        rc = -1;
    else
        e->count++;
    pthread_mutex_unlock(&cc->lock);
    return rc;
}

void conncap_release(struct conncap *cc, const struct sockaddr *sa)
{
    unsigned char key[16];
    key_of(sa, key);
    unsigned b = hash_key(key);
    pthread_mutex_lock(&cc->lock);
    struct cc_entry **pp = &cc->buckets[b];
    while (*pp && memcmp((*pp)->addr, key, 16) != 0)
        pp = &(*pp)->next;
    if (*pp && --(*pp)->count <= 0) {
        struct cc_entry *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    pthread_mutex_unlock(&cc->lock);
}
