/* The main configuration loader on arbitrary files: a config or a list of errors, each naming
 * the file, never a crash. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/config.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char err[65536];
    const char *path = fuzz_write_file(data, size, ".json");
    if (path == NULL)
        return 0;
    struct lg_config *cfg = config_load(path, err, sizeof err);
    if (cfg == NULL)
        FUZZ_CHECK(err[0] != '\0' && strstr(err, path) != NULL);
    config_free(cfg);
    unlink(path);
    return 0;
}
