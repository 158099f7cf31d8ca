/* Segment files: naming, listing, and reading a segment's lines.
 * A segment is "<instance>-<YYYYMMDD>-<first seq, 12 digits>.jsonl" in the audit directory;
 * its first line is a "segment" record that chains it to the previous one: that one's name,
 * length ("bytes"), lines digest and last checkpoint.
 *
 * The lines digest ("lines_sha256") is the SHA-256 of the RFC 6962 leaf hashes
 * (SHA-256(0x00 || line), the line without its newline) of the segment's lines, in order,
 * checkpoint lines included. With the length it pins every byte of the segment, as a SHA-256 of
 * the file would, but the writer gets it from the leaf hashes it makes anyway: hashing each
 * record a second time for a file digest was about a tenth of the gateway's CPU per lookup on
 * CPUs without SHA extensions (bench/RESULTS.md, fourteenth pass). Headers written before it
 * carry "sha256", the SHA-256 of the previous file; lookupgate-audit verify checks either. */
#ifndef LG_AUDIT_SEGMENT_H
#define LG_AUDIT_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define SEG_NAME_MAX 160

struct seg_file {
    char *path;              /* dir + "/" + name */
    char name[SEG_NAME_MAX];
    char instance[64];
    uint64_t first_seq;      /* from the name */
};

/* 1 if name is a valid instance name ([A-Za-z0-9._-], 1..63 characters). */
int seg_instance_ok(const char *name);
/* Builds a segment name; returns 0 or -1 if it does not fit. */
int seg_name(char *out, size_t outlen, const char *instance, int yyyymmdd, uint64_t first_seq);
/* Parses a segment name; 0 or -1 if name is not one. */
int seg_parse_name(const char *name, struct seg_file *out);

/* Segments in dir (of instance, or of every instance when NULL), sorted by instance then first
 * seq. Returns the count (0 for none) or -1 with a message. */
long seg_list(const char *dir, const char *instance, struct seg_file **out, char *err,
              size_t errlen);
void seg_list_free(struct seg_file *s, long n);

/* A whole file in memory. The writer makes zero-filled space ahead of its records (so that
 * fdatasync need not write the file's size; audit.zero_ahead_kb): a run of NUL bytes at the end
 * of a file is that space, never part of a record (records are JSON text, which has no NUL).
 * len excludes it; zeros is its length. */
struct seg_data {
    char *buf;
    size_t len;
    size_t zeros;
};
int seg_read(const char *path, struct seg_data *d, char *err, size_t errlen);
void seg_data_free(struct seg_data *d);

#endif
