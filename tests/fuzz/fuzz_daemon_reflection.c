/* fuzz_daemon_reflection.c: libFuzzer target for the daemon's reflection
 * service, which parses ServerReflectionRequest bytes from any client before
 * authentication is known to matter. Every input must give either -1 (not a
 * message) or a response that protobuf-c can unpack again. */
#include "reflection.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *resp = NULL;
    size_t len = 0;
    if (lsd_reflection_answer(data, size, &resp, &len) == 0) {
        Grpc__Reflection__V1__ServerReflectionResponse *r =
            grpc__reflection__v1__server_reflection_response__unpack(NULL, len, resp);
        if (!r) __builtin_trap();
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
    free(resp);
    return 0;
}
