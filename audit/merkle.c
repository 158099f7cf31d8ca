/* The Merkle tree frontier: append and tree head. */
#include "audit/merkle.h"

#include <stdlib.h>
#include <string.h>

#include "audit/crypto.h"
#include "common/sha256.h"

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH])
{
    static const uint8_t zero = 0;
    sha256_two(&zero, 1, data, len, out);
}

void merkle_node_hash(const uint8_t l[MERKLE_HASH], const uint8_t r[MERKLE_HASH],
                      uint8_t out[MERKLE_HASH])
{
    uint8_t buf[1 + 2 * MERKLE_HASH];
    buf[0] = 1;
    memcpy(buf + 1, l, MERKLE_HASH);
    memcpy(buf + 1 + MERKLE_HASH, r, MERKLE_HASH);
    sha256_two(buf, sizeof buf, NULL, 0, out);
}

void merkle_init(struct merkle *m)
{
    m->size = 0;
}

void merkle_append(struct merkle *m, const uint8_t leaf[MERKLE_HASH])
{
    uint8_t h[MERKLE_HASH];
    int l = 0;
    memcpy(h, leaf, MERKLE_HASH);
    /* Each set low bit is a complete subtree of the same size: merge and carry up. */
    while (m->size & ((uint64_t)1 << l)) {
        merkle_node_hash(m->level[l], h, h);
        l++;
    }
    memcpy(m->level[l], h, MERKLE_HASH);
    m->size++;
}

void merkle_root(const struct merkle *m, uint8_t out[MERKLE_HASH])
{
    if (m->size == 0) {
        sha256_two("", 0, NULL, 0, out);
        return;
    }
    /* MTH splits at the largest power of two below n, so the tree head folds the subtree
     * roots from the smallest (rightmost) to the largest. */
    int l = 0;
    while (!(m->size & ((uint64_t)1 << l)))
        l++;
    uint8_t r[MERKLE_HASH];
    memcpy(r, m->level[l], MERKLE_HASH);
    for (l++; l < MERKLE_MAX_LEVELS; l++)
        if (m->size & ((uint64_t)1 << l))
            merkle_node_hash(m->level[l], r, r);
    memcpy(out, r, MERKLE_HASH);
}

void merkle_frontier_text(const struct merkle *m, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (int l = MERKLE_MAX_LEVELS - 1; l >= 0; l--) {
        if (!(m->size & ((uint64_t)1 << l)))
            continue;
        if (o + 66 > outlen)
            return;
        if (o > 0)
            out[o++] = ',';
        hex_encode(m->level[l], MERKLE_HASH, out + o);
        o += 2 * MERKLE_HASH;
    }
}

int merkle_from_frontier(struct merkle *m, uint64_t size, const char *text)
{
    m->size = size;
    for (int l = MERKLE_MAX_LEVELS - 1; l >= 0; l--) {
        if (!(size & ((uint64_t)1 << l)))
            continue;
        if (hex_decode(text, 2 * MERKLE_HASH, m->level[l]) != 0)
            return -1;
        text += 2 * MERKLE_HASH;
        if (*text == ',')
            text++;
    }
    return *text == '\0' ? 0 : -1;
}
