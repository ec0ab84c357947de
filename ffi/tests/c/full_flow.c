/* The full flow against the embedded simulator: start it, connect, list VMs, create, list and
 * delete a First Class Disk, move a volume between two VMs, bring an environment of two VMs up
 * on the vSphere backend (status, then down), run a small pipeline with an approval, connect
 * over TLS with a pinned thumbprint, disconnect, stop.
 * Usage: full_flow SCRATCH_DIR */
#include "check.h"

static const char *PIPELINE =
    "kind: PIPELINE\n"
    "name: c-ship\n"
    "stageOrder: [Build, Release]\n"
    "stages:\n"
    "  Build:\n"
    "    taskOrder: [make]\n"
    "    tasks:\n"
    "      make:\n"
    "        type: Shell\n"
    "        input:\n"
    "          script: echo built\n"
    "    exitGate:\n"
    "      rules:\n"
    "        - type: approval\n"
    "          name: qa\n"
    "          approvers: [bob]\n"
    "          quorum: 1\n"
    "  Release:\n"
    "    taskOrder: [ship]\n"
    "    tasks:\n"
    "      ship:\n"
    "        type: Shell\n"
    "        input:\n"
    "          script: echo shipped\n";

static void list_vms(vsdk_client *client) {
    const char *props[] = {"name", "runtime.powerState", "summary.config.numCpu"};
    vsdk_objects *vms = NULL;
    CHECK(vsdk_client_list(client, "VirtualMachine", props, 3, &vms));
    size_t n = 0;
    CHECK(vsdk_objects_len(vms, &n));
    printf("%zu VMs\n", n);
    ASSERT(n >= 2);
    int seen_vm0 = 0;
    for (size_t i = 0; i < n; i++) {
        const char *type = NULL, *moref = NULL, *name = NULL, *power = NULL;
        CHECK(vsdk_objects_ref(vms, i, &type, &moref));
        ASSERT(strcmp(type, "VirtualMachine") == 0);
        CHECK(vsdk_objects_find(vms, i, "name", &name));
        CHECK(vsdk_objects_find(vms, i, "runtime.powerState", &power));
        ASSERT(strcmp(power, "poweredOn") == 0 || strcmp(power, "poweredOff") == 0 ||
               strcmp(power, "suspended") == 0);
        size_t np = 0;
        CHECK(vsdk_objects_property_count(vms, i, &np));
        ASSERT(np == 3);
        for (size_t j = 0; j < np; j++) {
            const char *pn = NULL, *pv = NULL;
            CHECK(vsdk_objects_property(vms, i, j, &pn, &pv));
            ASSERT(strlen(pn) > 0);
        }
        printf("  %s %s %s\n", moref, name, power);
        if (strcmp(name, "DC0_H0_VM0") == 0) {
            seen_vm0 = 1;
        }
    }
    ASSERT(seen_vm0);
    vsdk_objects_free(vms);
}

static void first_class_disks(vsdk_client *client) {
    int events = 0;
    char *id = NULL;
    CHECK(vsdk_fcd_create(client, "c-disk", 16, "LocalDS_0", count_event, &events, &id));
    printf("created disk %s (%d progress events)\n", id, events);
    ASSERT(events >= 1);
    vsdk_strings *ids = NULL;
    CHECK(vsdk_fcd_list(client, "LocalDS_0", &ids));
    ASSERT(strings_contain(ids, id));
    vsdk_strings_free(ids);
    CHECK(vsdk_fcd_delete(client, id, "LocalDS_0"));
    CHECK(vsdk_fcd_list(client, "LocalDS_0", &ids));
    ASSERT(!strings_contain(ids, id));
    vsdk_strings_free(ids);
    vsdk_string_free(id);
}

static void volume_move(vsdk_client *client, const char *scratch) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/volumes", scratch);
    vsdk_volumes *vols = NULL;
    CHECK(vsdk_volumes_open_fcd(client, "LocalDS_0", dir, &vols));
    char *id = NULL;
    CHECK(vsdk_volume_create(vols, "c-volume", 64u << 20, &id));
    int events = 0;
    CHECK(vsdk_volume_attach(vols, id, "DC0_H0_VM0", count_event, &events));
    ASSERT(events >= 4);
    char *node_a = NULL;
    CHECK(vsdk_volume_node(vols, id, &node_a));
    ASSERT(node_a != NULL);
    printf("volume %s on %s\n", id, node_a);
    /* vm-a unmounts and gives its lease up; the polite move to vm-b may then go. */
    CHECK(vsdk_volume_release(vols, id, "DC0_H0_VM0"));
    events = 0;
    CHECK(vsdk_volume_move(vols, id, "DC0_H0_VM1", false, count_event, &events));
    ASSERT(events >= 4);
    char *node_b = NULL;
    CHECK(vsdk_volume_node(vols, id, &node_b));
    ASSERT(node_b != NULL && strcmp(node_a, node_b) != 0);
    printf("volume %s moved to %s\n", id, node_b);
    CHECK(vsdk_volume_detach(vols, id, true));
    char *none = NULL;
    CHECK(vsdk_volume_node(vols, id, &none));
    ASSERT(none == NULL);
    CHECK(vsdk_volume_destroy(vols, id));
    vsdk_string_free(node_a);
    vsdk_string_free(node_b);
    vsdk_string_free(id);
    vsdk_volumes_free(vols);
}

static const char *ENVIRONMENT =
    "vms:\n"
    "  c-web:\n"
    "    template: /DC0/vm/DC0_H0_VM0\n"
    "    cpus: 2\n"
    "    memory: 512\n"
    "  c-db:\n"
    "    template: DC0_H0_VM1\n";

/* The environment's VMs are listed in the vSphere inventory by name. */
static int inventory_has_vm(vsdk_client *client, const char *want) {
    const char *props[] = {"name"};
    vsdk_objects *vms = NULL;
    CHECK(vsdk_client_list(client, "VirtualMachine", props, 1, &vms));
    size_t n = 0;
    CHECK(vsdk_objects_len(vms, &n));
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        CHECK(vsdk_objects_find(vms, i, "name", &name));
        found |= strcmp(name, want) == 0;
    }
    vsdk_objects_free(vms);
    return found;
}

static void environment(vsdk_client *client, const char *scratch) {
    vsdk_hypervisor *hv = NULL;
    CHECK(vsdk_hypervisor_open_vsphere(client, "/DC0/vm", "/DC0/host/DC0_C0/Resources", 0, &hv));
    const char *kind = NULL;
    CHECK(vsdk_hypervisor_kind(hv, &kind));
    ASSERT(strcmp(kind, "vsphere") == 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/env.yaml", scratch);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    ASSERT(fputs(ENVIRONMENT, f) >= 0);
    ASSERT(fclose(f) == 0);
    vsdk_env *env = NULL;
    CHECK(vsdk_env_load(hv, path, &env));
    /* The environment keeps what it needs: the hypervisor handle may go first. */
    vsdk_hypervisor_free(hv);

    int events = 0;
    CHECK(vsdk_env_up(env, 10000, count_event, &events));
    ASSERT(events == 6); /* creating, started and ip, for each VM */
    vsdk_vm_list *vms = NULL;
    CHECK(vsdk_env_status(env, &vms));
    size_t n = 0;
    CHECK(vsdk_vm_list_len(vms, &n));
    ASSERT(n == 2);
    for (size_t i = 0; i < n; i++) {
        vsdk_vm_record vm;
        CHECK(vsdk_vm_list_get(vms, i, &vm));
        printf("  %s %s (%s) %s\n", vm.name, vm.state == VSDK_VM_STATE_RUNNING ? "running" : "?",
               vm.raw_state, vm.ip ? vm.ip : "-");
        ASSERT(vm.state == VSDK_VM_STATE_RUNNING);
        ASSERT(strcmp(vm.raw_state, "poweredOn") == 0);
        ASSERT(vm.ip != NULL && strlen(vm.ip) >= 7);
    }
    vsdk_vm_record web;
    CHECK(vsdk_vm_list_find(vms, "c-web", &web));
    ASSERT(web.state == VSDK_VM_STATE_RUNNING);
    vsdk_vm_list_free(vms);
    ASSERT(inventory_has_vm(client, "c-web") && inventory_has_vm(client, "c-db"));
    printf("environment up: c-db and c-web run\n");

    events = 0;
    CHECK(vsdk_env_down(env, 5000, count_event, &events));
    ASSERT(events == 4); /* stopped and destroyed, for each VM */
    CHECK(vsdk_env_status(env, &vms));
    CHECK(vsdk_vm_list_find(vms, "c-db", &web));
    ASSERT(web.state == VSDK_VM_STATE_NONE && web.ip == NULL);
    vsdk_vm_list_free(vms);
    ASSERT(!inventory_has_vm(client, "c-web"));
    printf("environment down\n");
    vsdk_env_free(env);
}

static void pipeline(const char *scratch) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pipelines", scratch);
    vsdk_pipelines *p = NULL;
    CHECK(vsdk_pipelines_open(dir, &p));
    vsdk_pipeline *def = NULL;
    CHECK(vsdk_pipeline_parse(p, PIPELINE, &def));
    const char *name = NULL;
    CHECK(vsdk_pipeline_name(def, &name));
    ASSERT(strcmp(name, "c-ship") == 0);
    int events = 0;
    char *run = NULL;
    vsdk_run_outcome outcome;
    vsdk_strings *waiting = NULL;
    CHECK(vsdk_pipeline_run(p, def, NULL, 0, "ann", count_event, &events, &run, &outcome,
                            &waiting));
    ASSERT(outcome == VSDK_RUN_OUTCOME_WAITING);
    ASSERT(strings_contain(waiting, "Build.exit/qa"));
    ASSERT(events > 0);
    vsdk_strings_free(waiting);
    vsdk_run_status status;
    char *json = NULL;
    CHECK(vsdk_pipeline_status(p, run, &status, &json));
    ASSERT(status == VSDK_RUN_STATUS_WAITING);
    ASSERT(strstr(json, "Build.exit/qa") != NULL);
    vsdk_string_free(json);
    printf("run %s waits for Build.exit/qa\n", run);
    CHECK(vsdk_pipeline_approve(p, run, "Build.exit/qa", "bob", true, "lgtm", count_event,
                                &events, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_SUCCEEDED);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_SUCCEEDED);
    /* A finished run has nothing to resume. */
    EXPECT_CODE(vsdk_pipeline_resume(p, run, NULL, NULL, &outcome, NULL),
                VSDK_RESULT_INVALID_RUN_STATE);
    printf("run %s succeeded after bob's approval\n", run);
    vsdk_string_free(run);

    /* Pause a parked run: driven on after the approval, it pauses; resume finishes it. */
    CHECK(vsdk_pipeline_run(p, def, NULL, 0, "ann", NULL, NULL, &run, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_WAITING);
    CHECK(vsdk_pipeline_pause(p, run, "hold the release"));
    CHECK(vsdk_pipeline_approve(p, run, "Build.exit/qa", "bob", true, NULL, NULL, NULL, &outcome,
                                NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_PAUSED);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_PAUSED);
    CHECK(vsdk_pipeline_resume(p, run, NULL, NULL, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_SUCCEEDED);
    printf("run %s paused after the approval, then resumed to success\n", run);
    vsdk_string_free(run);

    /* Cancel a parked run: nothing drives it, so the cancel finishes it. */
    CHECK(vsdk_pipeline_start(p, def, NULL, 0, "ann", &run));
    CHECK(vsdk_pipeline_drive(p, run, NULL, NULL, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_WAITING);
    CHECK(vsdk_pipeline_cancel(p, run, false, "not this week"));
    CHECK(vsdk_pipeline_status(p, run, &status, &json));
    ASSERT(status == VSDK_RUN_STATUS_CANCELLED);
    ASSERT(strstr(json, "\"CANCELLED\"") != NULL);
    vsdk_string_free(json);
    printf("run %s cancelled while it waited\n", run);
    vsdk_string_free(run);
    vsdk_pipeline_free(def);

    /* A task that fails the first time: the run fails, and resume finishes it. */
    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "kind: PIPELINE\nname: flaky\nstageOrder: [S]\nstages:\n  S:\n"
             "    taskOrder: [once, after]\n    tasks:\n"
             "      once:\n        type: Shell\n        input:\n"
             "          script: if [ -f %s/flaky-ok ]; then exit 0; fi; touch %s/flaky-ok; exit 3\n"
             "      after:\n        type: Shell\n        input:\n          script: echo after\n",
             scratch, scratch);
    CHECK(vsdk_pipeline_parse(p, yaml, &def));
    CHECK(vsdk_pipeline_run(p, def, NULL, 0, "ann", NULL, NULL, &run, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_FAILED);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_FAILED);
    events = 0;
    CHECK(vsdk_pipeline_resume(p, run, count_event, &events, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_SUCCEEDED);
    ASSERT(events > 0);
    printf("run %s failed, then succeeded on resume\n", run);
    vsdk_string_free(run);
    vsdk_pipeline_free(def);
    vsdk_pipelines_free(p);
}

static void tls_with_thumbprint(void) {
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(true, &sim));
    const char *url = NULL, *thumbprint = NULL;
    CHECK(vsdk_sim_url_with_credentials(sim, &url));
    CHECK(vsdk_sim_thumbprint(sim, &thumbprint));
    ASSERT(strncmp(url, "https://", 8) == 0);
    vsdk_client *client = NULL;
    CHECK(vsdk_client_connect(url, NULL, NULL, thumbprint, false, &client));
    const char *props[] = {"name"};
    vsdk_objects *ds = NULL;
    CHECK(vsdk_client_list(client, "Datastore", props, 1, &ds));
    size_t n = 0;
    CHECK(vsdk_objects_len(ds, &n));
    ASSERT(n >= 1);
    printf("TLS with pinned thumbprint %s: %zu datastores\n", thumbprint, n);
    vsdk_objects_free(ds);
    CHECK(vsdk_client_disconnect(client));
    vsdk_sim_stop(sim);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: full_flow SCRATCH_DIR\n");
        return 2;
    }
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(false, &sim));
    const char *url = NULL, *user = NULL, *password = NULL;
    CHECK(vsdk_sim_url(sim, &url));
    CHECK(vsdk_sim_user(sim, &user));
    CHECK(vsdk_sim_password(sim, &password));
    printf("simulator at %s\n", url);
    vsdk_client *client = NULL;
    CHECK(vsdk_client_connect(url, user, password, NULL, false, &client));
    ASSERT(strlen(vsdk_last_error()) == 0);

    list_vms(client);
    first_class_disks(client);
    volume_move(client, argv[1]);
    environment(client, argv[1]);
    pipeline(argv[1]);

    CHECK(vsdk_client_disconnect(client));
    vsdk_sim_stop(sim);
    tls_with_thumbprint();
    printf("full_flow: OK\n");
    return 0;
}
