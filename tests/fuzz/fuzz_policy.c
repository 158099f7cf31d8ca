/* The policy loader on arbitrary files: a snapshot or positioned errors, never a crash; a
 * loaded policy answers decisions (an arbitrary token and path) without crashing either. */
#include <http_parser.h>
#include <string.h>
#include <unistd.h>

#include "policy/clock.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char err[65536];
    static int zone;
    if (!zone) {
        char e[200];
        clock_set_zone("Asia/Ho_Chi_Minh", e, sizeof e);
        zone = 1;
    }
    const char *path = fuzz_write_file(data, size, ".policy.json");
    if (path == NULL)
        return 0;
    struct policy *p = policy_load(path, err, sizeof err);
    if (p == NULL) {
        FUZZ_CHECK(err[0] != '\0' && strstr(err, path) != NULL);
    } else {
        struct pol_request rq;
        struct pol_decision d;
        memset(&rq, 0, sizeof rq);
        rq.method = HTTP_GET;
        rq.path = "/api/v1/citizens/079123456789";
        rq.path_len = strlen(rq.path);
        rq.authorization = (struct pol_hval){"Bearer lg_fuzz", 14, 1};
        rq.now_ms = 1790000000000LL;
        policy_decide(p, &rq, &d);
        FUZZ_CHECK(d.decision < DECISION__COUNT);
        policy_unref(p);
    }
    unlink(path);
    return 0;
}
