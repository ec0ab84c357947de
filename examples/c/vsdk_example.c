/* A complete C program on libvsdk, the SDK's C API, end to end against the embedded vCenter
 * simulator: connect, list the VMs, create and delete a First Class Disk, move a volume from
 * one VM to another, bring an environment of VMs up and down on the vSphere backend, and run
 * a pipeline that waits for an approval.
 *
 * Build (from the workspace root, after `cargo build --release -p sdk-ffi`):
 *   cc -std=c11 -Wall -Wextra -Werror -I ffi/include examples/c/vsdk_example.c \
 *      target/release/libvsdk.a -lgit2 -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o vsdk_example
 * Run:
 *   ./vsdk_example /tmp/vsdk-example
 * (`cargo run --release -p examples --bin tour` does all three in its chapter "The SDK from C".)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsdk.h"

/* Prints the failed call's result and message, and ends the program. */
static void check(vsdk_result r, const char *what) {
    if (r != VSDK_RESULT_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, vsdk_result_name(r), vsdk_last_error());
        exit(1);
    }
}

/* Progress events: called on this thread, during the call that took the callback. */
static void on_event(void *user_data, const char *event) {
    printf("  [%s] %s\n", (const char *)user_data, event);
}

static void list_vms(vsdk_client *client) {
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
}

static void first_class_disk(vsdk_client *client) {
    char *id = NULL;
    check(vsdk_fcd_create(client, "example-disk", 16, "LocalDS_0", on_event, "disk", &id),
          "create a disk");
    vsdk_strings *ids = NULL;
    check(vsdk_fcd_list(client, "LocalDS_0", &ids), "list disks");
    size_t n = 0;
    check(vsdk_strings_len(ids, &n), "count");
    printf("disk %s created; LocalDS_0 holds %zu disk(s)\n", id, n);
    vsdk_strings_free(ids);
    check(vsdk_fcd_delete(client, id, "LocalDS_0"), "delete the disk");
    vsdk_string_free(id);
}

static void volume_move(vsdk_client *client, const char *state_dir) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/volumes", state_dir);
    vsdk_volumes *volumes = NULL;
    check(vsdk_volumes_open_fcd(client, "LocalDS_0", dir, &volumes), "volumes");
    char *id = NULL;
    check(vsdk_volume_create(volumes, "example-volume", 64u << 20, &id), "create");
    check(vsdk_volume_attach(volumes, id, "DC0_H0_VM0", on_event, "attach"), "attach");
    check(vsdk_volume_move(volumes, id, "DC0_H0_VM1", true, on_event, "move"), "move");
    char *node = NULL;
    check(vsdk_volume_node(volumes, id, &node), "where");
    printf("volume %s is on %s\n", id, node);
    check(vsdk_volume_destroy(volumes, id), "destroy");
    vsdk_string_free(node);
    vsdk_string_free(id);
    vsdk_volumes_free(volumes);
}

static void environment(vsdk_client *client) {
    vsdk_hypervisor *hv = NULL;
    check(vsdk_hypervisor_open_vsphere(client, "/DC0/vm", "/DC0/host/DC0_C0/Resources", 0, &hv),
          "vSphere backend");
    vsdk_env *env = NULL;
    check(vsdk_env_parse(hv,
                         "vms:\n"
                         "  web:\n"
                         "    template: /DC0/vm/DC0_H0_VM0\n"
                         "    cpus: 2\n"
                         "    memory: 512\n",
                         NULL, &env),
          "environment");
    check(vsdk_env_up(env, 30000, on_event, "up"), "up");
    vsdk_vm_list *vms = NULL;
    check(vsdk_env_status(env, &vms), "status");
    size_t n = 0;
    check(vsdk_vm_list_len(vms, &n), "count");
    for (size_t i = 0; i < n; i++) {
        vsdk_vm_record vm;
        check(vsdk_vm_list_get(vms, i, &vm), "VM");
        printf("VM %s: %s, address %s\n", vm.name, vm.raw_state, vm.ip ? vm.ip : "none");
    }
    vsdk_vm_list_free(vms);
    check(vsdk_env_down(env, 5000, on_event, "down"), "down");
    vsdk_env_free(env);
    vsdk_hypervisor_free(hv);
}

static void pipeline(const char *state_dir) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pipelines", state_dir);
    vsdk_pipelines *pipelines = NULL;
    check(vsdk_pipelines_open(dir, &pipelines), "pipelines");
    vsdk_pipeline *def = NULL;
    check(vsdk_pipeline_parse(pipelines,
                              "kind: PIPELINE\n"
                              "name: ship\n"
                              "stageOrder: [Build, Release]\n"
                              "stages:\n"
                              "  Build:\n"
                              "    taskOrder: [make]\n"
                              "    tasks:\n"
                              "      make: { type: Shell, input: { script: echo built } }\n"
                              "    exitGate:\n"
                              "      rules:\n"
                              "        - { type: approval, name: qa, approvers: [bob], quorum: 1 }\n"
                              "  Release:\n"
                              "    taskOrder: [ship]\n"
                              "    tasks:\n"
                              "      ship: { type: Shell, input: { script: echo shipped } }\n",
                              &def),
          "load the pipeline");
    char *run = NULL;
    vsdk_run_outcome outcome;
    vsdk_strings *waiting = NULL;
    check(vsdk_pipeline_run(pipelines, def, NULL, 0, "ann", on_event, "run", &run, &outcome,
                            &waiting),
          "run");
    const char *request = NULL;
    check(vsdk_strings_get(waiting, 0, &request), "the approval request");
    printf("run %s waits for %s\n", run, request);
    check(vsdk_pipeline_approve(pipelines, run, request, "bob", true, "looks good", on_event,
                                "approve", &outcome, NULL),
          "approve");
    printf("run %s %s\n", run,
           outcome == VSDK_RUN_OUTCOME_SUCCEEDED ? "succeeded" : "did not succeed");
    vsdk_strings_free(waiting);
    vsdk_string_free(run);
    vsdk_pipeline_free(def);
    vsdk_pipelines_free(pipelines);
    if (outcome != VSDK_RUN_OUTCOME_SUCCEEDED) {
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *state_dir = argc > 1 ? argv[1] : "vsdk-example-state";

    vsdk_sim *sim = NULL;
    check(vsdk_sim_start(false, &sim), "start the simulator");
    const char *url = NULL, *user = NULL, *password = NULL;
    check(vsdk_sim_url(sim, &url), "simulator URL");
    check(vsdk_sim_user(sim, &user), "simulator user");
    check(vsdk_sim_password(sim, &password), "simulator password");
    vsdk_client *client = NULL;
    check(vsdk_client_connect(url, user, password, NULL, false, &client), "connect");
    printf("connected to %s as %s\n", url, user);

    list_vms(client);
    first_class_disk(client);
    volume_move(client, state_dir);
    environment(client);
    pipeline(state_dir);

    check(vsdk_client_disconnect(client), "disconnect");
    vsdk_sim_stop(sim);
    printf("vsdk_example: OK\n");
    return 0;
}
