/* RFC 6962 Merkle tree hashing (section 2.1): leaf = SHA-256(0x00 || line), node =
 * SHA-256(0x01 || left || right), and the tree head of n leaves as MTH defines it. The tree is
 * kept as its frontier: the roots of the perfect subtrees that make up the first n leaves, one
 * per set bit of n, so appending is O(log n) and memory is constant. */
#ifndef LG_AUDIT_MERKLE_H
#define LG_AUDIT_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH 32
#define MERKLE_MAX_LEVELS 64

struct merkle {
    uint64_t size;                                    /* leaves appended */
    uint8_t level[MERKLE_MAX_LEVELS][MERKLE_HASH];    /* level[i] valid iff bit i of size */
};

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH]);
void merkle_node_hash(const uint8_t l[MERKLE_HASH], const uint8_t r[MERKLE_HASH],
                      uint8_t out[MERKLE_HASH]);

void merkle_init(struct merkle *m);
void merkle_append(struct merkle *m, const uint8_t leaf[MERKLE_HASH]);
/* The tree head (SHA-256 of the empty string for no leaves). */
void merkle_root(const struct merkle *m, uint8_t out[MERKLE_HASH]);

/* The frontier as text: the subtree roots from the largest to the smallest, hex, separated by
 * ','; "" for an empty tree. out must hold 65 * 64 bytes. */
void merkle_frontier_text(const struct merkle *m, char *out, size_t outlen);
/* Rebuilds a tree of size leaves from its frontier text. Returns 0, or -1 if it does not fit. */
int merkle_from_frontier(struct merkle *m, uint64_t size, const char *text);

#endif
