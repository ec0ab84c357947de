/* Times the C API's boundary from C: a call that does no work (vsdk_result_name), a call
 * through the full entry-point guard (vsdk_strings_len: panic guard, NULL checks, last-error
 * reset), and listing the VMs (name, power state) of a vCenter with vsdk_client_list, reading
 * every value. Prints one `figure value` line per measurement.
 * Usage: boundary URL N_CHEAP N_LIST */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vsdk.h"

#define CHECK(call)                                                                   \
    do {                                                                              \
        vsdk_result r_ = (call);                                                      \
        if (r_ != VSDK_RESULT_OK) {                                                   \
            fprintf(stderr, "%s failed: %s: %s\n", #call, vsdk_result_name(r_),       \
                    vsdk_last_error());                                               \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t list_once(vsdk_client *client) {
    const char *props[] = {"name", "runtime.powerState"};
    vsdk_objects *vms = NULL;
    CHECK(vsdk_client_list(client, "VirtualMachine", props, 2, &vms));
    size_t n = 0, bytes = 0;
    CHECK(vsdk_objects_len(vms, &n));
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL, *power = NULL;
        CHECK(vsdk_objects_find(vms, i, "name", &name));
        CHECK(vsdk_objects_find(vms, i, "runtime.powerState", &power));
        bytes += strlen(name) + strlen(power);
    }
    vsdk_objects_free(vms);
    return n + (bytes == 0);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: boundary URL N_CHEAP N_LIST\n");
        return 2;
    }
    long cheap = atol(argv[2]), lists = atol(argv[3]);
    volatile size_t sink = 0;

    double t0 = now();
    for (long i = 0; i < cheap; i++) {
        sink += strlen(vsdk_result_name(i & 1 ? VSDK_RESULT_OK : VSDK_RESULT_NOT_FOUND));
    }
    printf("result_name_ns %.2f\n", (now() - t0) * 1e9 / (double)cheap);

    vsdk_client *client = NULL;
    CHECK(vsdk_client_connect(argv[1], NULL, NULL, NULL, false, &client));
    vsdk_strings *ids = NULL;
    CHECK(vsdk_fcd_list(client, "LocalDS_0", &ids));
    t0 = now();
    for (long i = 0; i < cheap; i++) {
        size_t n = 0;
        CHECK(vsdk_strings_len(ids, &n));
        sink += n;
    }
    printf("guarded_call_ns %.2f\n", (now() - t0) * 1e9 / (double)cheap);
    vsdk_strings_free(ids);

    size_t vms = 0;
    for (int i = 0; i < 5; i++) {
        vms = list_once(client);
    }
    t0 = now();
    for (long i = 0; i < lists; i++) {
        sink += list_once(client);
    }
    printf("list_vms_us %.2f\n", (now() - t0) * 1e6 / (double)lists);
    printf("vms %zu\n", vms);
    CHECK(vsdk_client_disconnect(client));
    return sink == 0;
}
