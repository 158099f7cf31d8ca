/* For the loader fuzzers: the input written to a file of this process (in /dev/shm when it
 * exists), since the loaders read paths. */
#ifndef LG_FUZZ_FILES_H
#define LG_FUZZ_FILES_H

#include <stdio.h>
#include <unistd.h>

static inline const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/lg-fuzz-%d%s",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return NULL;
    fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

#endif
