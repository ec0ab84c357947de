/* A complete C program on libvsdk, the SDK's C API: start the embedded vCenter simulator,
 * connect, list the VMs with their power state, and move a volume (a First Class Disk)
 * from one VM to another, printing each step of the move.
 *
 * Build (from the workspace root, after `cargo build -p sdk-ffi`):
 *   cc -std=c11 -Wall -Wextra -Werror -I ffi/include examples/c/vsdk_example.c \
 *      target/debug/libvsdk.a -lgit2 -lpthread -ldl -lm -lrt -lutil -lgcc_s -lc -o vsdk_example
 * Run:
 *   ./vsdk_example /tmp/vsdk-example
 */
#include <stdio.h>
#include <stdlib.h>

#include "vsdk.h"

/* Prints the failed call's result and message, and ends the program. */
static void check(vsdk_result r, const char *what) {
    if (r != VSDK_RESULT_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, vsdk_result_name(r), vsdk_last_error());
        exit(1);
    }
}

/* Progress of the move: called on this thread, during vsdk_volume_move. */
static void on_step(void *user_data, const char *event) {
    printf("  [%s] %s\n", (const char *)user_data, event);
}

int main(int argc, char **argv) {
    const char *state_dir = argc > 1 ? argv[1] : "vsdk-example-state";

    vsdk_sim *sim = NULL;
    check(vsdk_sim_start(false, &sim), "start the simulator");
    const char *url = NULL;
    check(vsdk_sim_url_with_credentials(sim, &url), "simulator URL");

    vsdk_client *client = NULL;
    check(vsdk_client_connect(url, NULL, NULL, NULL, false, &client), "connect");

    const char *props[] = {"name", "runtime.powerState"};
    vsdk_objects *vms = NULL;
    check(vsdk_client_list(client, "VirtualMachine", props, 2, &vms), "list VMs");
    size_t n = 0;
    check(vsdk_objects_len(vms, &n), "count");
    for (size_t i = 0; i < n; i++) {
        const char *moref = NULL, *name = NULL, *power = NULL;
        check(vsdk_objects_ref(vms, i, NULL, &moref), "moref");
        check(vsdk_objects_find(vms, i, "name", &name), "name");
        check(vsdk_objects_find(vms, i, "runtime.powerState", &power), "power state");
        printf("%-8s %-12s %s\n", moref, name, power);
    }
    vsdk_objects_free(vms);

    vsdk_volumes *volumes = NULL;
    check(vsdk_volumes_open_fcd(client, "LocalDS_0", state_dir, &volumes), "volumes");
    char *id = NULL;
    check(vsdk_volume_create(volumes, "example-volume", 64u << 20, &id), "create");
    check(vsdk_volume_attach(volumes, id, "DC0_H0_VM0", on_step, "attach"), "attach");
    check(vsdk_volume_move(volumes, id, "DC0_H0_VM1", true, on_step, "move"), "move");
    char *node = NULL;
    check(vsdk_volume_node(volumes, id, &node), "where");
    printf("volume %s is on %s\n", id, node);
    check(vsdk_volume_destroy(volumes, id), "destroy");
    vsdk_string_free(node);
    vsdk_string_free(id);
    vsdk_volumes_free(volumes);

    check(vsdk_client_disconnect(client), "disconnect");
    vsdk_sim_stop(sim);
    printf("vsdk_example: OK\n");
    return 0;
}
