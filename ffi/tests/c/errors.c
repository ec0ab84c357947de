/* Every error path: NULL arguments, invalid UTF-8, bad URLs, a bad password, a wrong
 * thumbprint, unknown ids (disks, datastores, volumes, nodes, runs, approval requests, VMs),
 * invalid pipelines and environments, out-of-range indexes, a held lease, a re-entrant call
 * from a callback, NULL frees. Each returns its documented code and leaves a last-error message.
 * Usage: errors SCRATCH_DIR */
#include "check.h"

static vsdk_volumes *reentrant_volumes;
static vsdk_result reentrant_result = VSDK_RESULT_OK;

/* A callback that calls back into the library: refused, not deadlocked. */
static void call_back_in(void *user_data, const char *event) {
    (void)event;
    char *node = NULL;
    reentrant_result = vsdk_volume_node(reentrant_volumes, (const char *)user_data, &node);
    vsdk_string_free(node);
}

static void arguments(void) {
    printf("arguments\n");
    vsdk_client *client = NULL;
    EXPECT_CODE(vsdk_client_connect(NULL, "u", "p", NULL, false, &client),
                VSDK_RESULT_NULL_PARAMETER);
    ASSERT(strstr(vsdk_last_error(), "url") != NULL);
    EXPECT_CODE(vsdk_client_connect("http://127.0.0.1:1/sdk", "u", "p", NULL, false, NULL),
                VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_client_connect("http://\xff\xfe/sdk", "u", "p", NULL, false, &client),
                VSDK_RESULT_INVALID_UTF8);
    EXPECT_CODE(vsdk_client_connect("ftp://vc.example.com/sdk", "u", "p", NULL, false, &client),
                VSDK_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(vsdk_client_connect("http://127.0.0.1:1/sdk", "u", NULL, NULL, false, &client),
                VSDK_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(vsdk_client_connect("http://127.0.0.1:1/sdk", "u", "p", "not-a-thumbprint",
                                    false, &client),
                VSDK_RESULT_INVALID_ARGUMENT);
    /* Nothing listens on port 1. */
    EXPECT_CODE(vsdk_client_connect("http://127.0.0.1:1/sdk", "u", "p", NULL, false, &client),
                VSDK_RESULT_CONNECT);
    ASSERT(client == NULL);
    /* Out-parameters are written only on success. */
    vsdk_objects *objects = NULL;
    EXPECT_CODE(vsdk_client_list(NULL, "VirtualMachine", NULL, 0, &objects),
                VSDK_RESULT_NULL_PARAMETER);
    ASSERT(objects == NULL);
    size_t n = 7;
    EXPECT_CODE(vsdk_objects_len(NULL, &n), VSDK_RESULT_NULL_PARAMETER);
    ASSERT(n == 7);
    EXPECT_CODE(vsdk_strings_len(NULL, &n), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_sim_start(false, NULL), VSDK_RESULT_NULL_PARAMETER);
    const char *s = NULL;
    EXPECT_CODE(vsdk_sim_url(NULL, &s), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_volumes_open_memory(NULL, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_pipelines_open(NULL, NULL), VSDK_RESULT_NULL_PARAMETER);
    /* A successful call clears the last error. */
    ASSERT(strcmp(vsdk_result_name(VSDK_RESULT_LEASE_HELD), "VSDK_RESULT_LEASE_HELD") == 0);
    ASSERT(strlen(vsdk_last_error()) > 0);
    /* Frees accept NULL. */
    vsdk_sim_stop(NULL);
    ASSERT(vsdk_client_disconnect(NULL) == VSDK_RESULT_OK);
    vsdk_objects_free(NULL);
    vsdk_strings_free(NULL);
    vsdk_string_free(NULL);
    vsdk_volumes_free(NULL);
    vsdk_pipelines_free(NULL);
    vsdk_pipeline_free(NULL);
}

static void vsphere(const char *scratch) {
    printf("vsphere\n");
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(false, &sim));
    const char *url = NULL, *thumbprint = NULL;
    CHECK(vsdk_sim_url(sim, &url));
    EXPECT_CODE(vsdk_sim_thumbprint(sim, &thumbprint), VSDK_RESULT_UNSUPPORTED);
    vsdk_client *client = NULL;
    EXPECT_CODE(vsdk_client_connect(url, "user", "wrong-password", NULL, false, &client),
                VSDK_RESULT_LOGIN_FAILED);
    ASSERT(strstr(vsdk_last_error(), "wrong-password") == NULL);
    ASSERT(client == NULL);
    CHECK(vsdk_client_connect(url, "user", "pass", NULL, false, &client));

    vsdk_objects *vms = NULL;
    const char *props[] = {"name"};
    EXPECT_CODE(vsdk_client_list(client, "VirtualMachine", NULL, 1, &vms),
                VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_client_list(client, "", props, 1, &vms), VSDK_RESULT_INVALID_ARGUMENT);
    CHECK(vsdk_client_list(client, "VirtualMachine", props, 1, &vms));
    size_t n = 0;
    CHECK(vsdk_objects_len(vms, &n));
    const char *value = NULL, *name = NULL;
    EXPECT_CODE(vsdk_objects_find(vms, 0, "config.nothing", &value), VSDK_RESULT_NOT_FOUND);
    EXPECT_CODE(vsdk_objects_find(vms, n, "name", &value), VSDK_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(vsdk_objects_property(vms, 0, 5, &name, &value), VSDK_RESULT_INVALID_ARGUMENT);
    vsdk_objects_free(vms);

    char *id = NULL;
    vsdk_strings *ids = NULL;
    EXPECT_CODE(vsdk_fcd_create(client, "", 16, "LocalDS_0", NULL, NULL, &id),
                VSDK_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(vsdk_fcd_create(client, "d", 16, "NoSuchDatastore", NULL, NULL, &id),
                VSDK_RESULT_NOT_FOUND);
    EXPECT_CODE(vsdk_fcd_list(client, "NoSuchDatastore", &ids), VSDK_RESULT_NOT_FOUND);
    EXPECT_CODE(vsdk_fcd_delete(client, "00000000-no-such-disk", "LocalDS_0"),
                VSDK_RESULT_NOT_FOUND);
    CHECK(vsdk_fcd_list(client, "LocalDS_0", &ids));
    const char *item = NULL;
    CHECK(vsdk_strings_len(ids, &n));
    EXPECT_CODE(vsdk_strings_get(ids, n, &item), VSDK_RESULT_INVALID_ARGUMENT);
    vsdk_strings_free(ids);

    /* First Class Disk volumes: unknown VMs are unknown nodes. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fcd-volumes", scratch);
    vsdk_volumes *vols = NULL;
    CHECK(vsdk_volumes_open_fcd(client, "LocalDS_0", dir, &vols));
    CHECK(vsdk_volume_create(vols, "err-volume", 16u << 20, &id));
    EXPECT_CODE(vsdk_volume_attach(vols, id, "no-such-vm", NULL, NULL), VSDK_RESULT_UNKNOWN_NODE);
    /* A refused move changes nothing: nothing is journaled, the volume is not busy. */
    CHECK(vsdk_volume_destroy(vols, id));
    vsdk_string_free(id);
    vsdk_volumes_free(vols);

    CHECK(vsdk_client_disconnect(client));
    vsdk_sim_stop(sim);

    /* A TLS simulator and a thumbprint that is not its certificate's. */
    CHECK(vsdk_sim_start(true, &sim));
    CHECK(vsdk_sim_url_with_credentials(sim, &url));
    EXPECT_CODE(vsdk_client_connect(url, NULL, NULL,
                                    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33",
                                    false, &client),
                VSDK_RESULT_CONNECT);
    vsdk_sim_stop(sim);
}

static void volumes(const char *scratch) {
    printf("volumes\n");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/memory-volumes", scratch);
    vsdk_volumes *vols = NULL;
    CHECK(vsdk_volumes_open_memory(dir, &vols));
    char *node = NULL;
    EXPECT_CODE(vsdk_volume_move(vols, "no-such-volume", "a", false, NULL, NULL),
                VSDK_RESULT_UNKNOWN_VOLUME);
    EXPECT_CODE(vsdk_volume_node(vols, "no-such-volume", &node), VSDK_RESULT_UNKNOWN_VOLUME);
    EXPECT_CODE(vsdk_volume_destroy(vols, "no-such-volume"), VSDK_RESULT_UNKNOWN_VOLUME);
    EXPECT_CODE(vsdk_volume_detach(vols, "no-such-volume", false), VSDK_RESULT_UNKNOWN_VOLUME);
    EXPECT_CODE(vsdk_volume_create(vols, "", 1024, &node), VSDK_RESULT_INVALID_ARGUMENT);
    char *id = NULL;
    CHECK(vsdk_volume_create(vols, "held", 1u << 20, &id));
    EXPECT_CODE(vsdk_volume_create(vols, "held", 2u << 20, &node), VSDK_RESULT_VOLUME_NAME_CONFLICT);
    CHECK(vsdk_volume_attach(vols, id, "node-a", NULL, NULL));
    /* node-a holds a live lease: a polite move refuses, a preempting one takes it. */
    EXPECT_CODE(vsdk_volume_move(vols, id, "node-b", false, NULL, NULL), VSDK_RESULT_LEASE_HELD);
    reentrant_volumes = vols;
    CHECK(vsdk_volume_move(vols, id, "node-b", true, call_back_in, id));
    ASSERT(reentrant_result == VSDK_RESULT_REENTRANT);
    printf("  a call from inside a callback -> %s\n", vsdk_result_name(reentrant_result));
    CHECK(vsdk_volume_node(vols, id, &node));
    ASSERT(strcmp(node, "node-b") == 0);
    vsdk_string_free(node);
    vsdk_string_free(id);
    vsdk_volumes_free(vols);
}

static void pipelines(const char *scratch) {
    printf("pipelines\n");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pipelines", scratch);
    vsdk_pipelines *p = NULL;
    CHECK(vsdk_pipelines_open(dir, &p));
    vsdk_pipeline *def = NULL;
    EXPECT_CODE(vsdk_pipeline_parse(p, "kind: PIPELINE\nname: [broken\n", &def),
                VSDK_RESULT_INVALID_PIPELINE);
    EXPECT_CODE(vsdk_pipeline_parse(p, "kind: PIPELINE\nname: x\nstageOrder: [Nope]\n", &def),
                VSDK_RESULT_INVALID_PIPELINE);
    snprintf(dir, sizeof dir, "%s/no-such-file.yaml", scratch);
    EXPECT_CODE(vsdk_pipeline_load(p, dir, &def), VSDK_RESULT_IO);
    ASSERT(def == NULL);
    vsdk_run_status status;
    vsdk_run_outcome outcome;
    EXPECT_CODE(vsdk_pipeline_status(p, "no-such-run", &status, NULL), VSDK_RESULT_UNKNOWN_RUN);
    EXPECT_CODE(vsdk_pipeline_resume(p, "no-such-run", NULL, NULL, &outcome, NULL),
                VSDK_RESULT_UNKNOWN_RUN);
    CHECK(vsdk_pipeline_parse(p,
                              "kind: PIPELINE\nname: gated\nstageOrder: [S]\nstages:\n"
                              "  S:\n    taskOrder: [t]\n    tasks:\n      t:\n"
                              "        type: Shell\n        input:\n          script: 'true'\n"
                              "    exitGate:\n      rules:\n        - type: approval\n"
                              "          name: qa\n          approvers: [ann, bob]\n"
                              "          quorum: 1\n",
                              &def));
    char *run = NULL;
    const char *bad_inputs[] = {"no-equals-sign"};
    EXPECT_CODE(vsdk_pipeline_run(p, def, bad_inputs, 1, "ann", NULL, NULL, &run, &outcome, NULL),
                VSDK_RESULT_INVALID_ARGUMENT);
    const char *unknown_inputs[] = {"colour=blue"};
    EXPECT_CODE(vsdk_pipeline_run(p, def, unknown_inputs, 1, "ann", NULL, NULL, &run, &outcome,
                                  NULL),
                VSDK_RESULT_INVALID_PIPELINE);
    CHECK(vsdk_pipeline_run(p, def, NULL, 0, "ann", NULL, NULL, &run, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_WAITING);
    /* The initiator may not approve; strangers may not; unknown requests are refused. */
    EXPECT_CODE(vsdk_pipeline_approve(p, run, "S.exit/qa", "ann", true, NULL, NULL, NULL,
                                      &outcome, NULL),
                VSDK_RESULT_APPROVAL_REFUSED);
    EXPECT_CODE(vsdk_pipeline_approve(p, run, "S.exit/qa", "eve", true, NULL, NULL, NULL,
                                      &outcome, NULL),
                VSDK_RESULT_APPROVAL_REFUSED);
    EXPECT_CODE(vsdk_pipeline_approve(p, run, "nope", "bob", true, NULL, NULL, NULL, &outcome,
                                      NULL),
                VSDK_RESULT_APPROVAL_REFUSED);
    EXPECT_CODE(vsdk_pipeline_approve(p, "no-such-run", "S.exit/qa", "bob", true, NULL, NULL,
                                      NULL, &outcome, NULL),
                VSDK_RESULT_UNKNOWN_RUN);
    /* A rejection fails the run. */
    CHECK(vsdk_pipeline_approve(p, run, "S.exit/qa", "bob", false, "no", NULL, NULL, &outcome,
                                NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_FAILED);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_FAILED);
    vsdk_string_free(run);

    /* Run control: unknown runs, NULLs, finished runs. */
    EXPECT_CODE(vsdk_pipeline_pause(p, "no-such-run", NULL), VSDK_RESULT_UNKNOWN_RUN);
    EXPECT_CODE(vsdk_pipeline_cancel(p, "no-such-run", true, NULL), VSDK_RESULT_UNKNOWN_RUN);
    EXPECT_CODE(vsdk_pipeline_drive(p, "no-such-run", NULL, NULL, &outcome, NULL),
                VSDK_RESULT_UNKNOWN_RUN);
    EXPECT_CODE(vsdk_pipeline_pause(NULL, "r", NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_pipeline_cancel(p, NULL, false, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_pipeline_start(p, def, NULL, 0, "ann", NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_pipeline_start(p, def, unknown_inputs, 1, "ann", &run),
                VSDK_RESULT_INVALID_PIPELINE);
    CHECK(vsdk_pipeline_run(p, def, NULL, 0, "ann", NULL, NULL, &run, &outcome, NULL));
    CHECK(vsdk_pipeline_cancel(p, run, true, "stop"));
    EXPECT_CODE(vsdk_pipeline_cancel(p, run, true, "again"), VSDK_RESULT_INVALID_RUN_STATE);
    EXPECT_CODE(vsdk_pipeline_pause(p, run, NULL), VSDK_RESULT_INVALID_RUN_STATE);
    /* Driving a finished run reports how it finished. */
    CHECK(vsdk_pipeline_drive(p, run, NULL, NULL, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_CANCELLED);
    vsdk_string_free(run);
    vsdk_pipeline_free(def);
    vsdk_pipelines_free(p);
}

static void environments(const char *scratch) {
    printf("environments\n");
    const char *pool = "/DC0/host/DC0_C0/Resources";
    vsdk_hypervisor *hv = NULL;
    vsdk_env *env = NULL;
    EXPECT_CODE(vsdk_hypervisor_open_vsphere(NULL, "/DC0/vm", pool, 0, &hv),
                VSDK_RESULT_NULL_PARAMETER);
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(false, &sim));
    const char *url = NULL;
    CHECK(vsdk_sim_url_with_credentials(sim, &url));
    vsdk_client *client = NULL;
    CHECK(vsdk_client_connect(url, NULL, NULL, NULL, false, &client));
    EXPECT_CODE(vsdk_hypervisor_open_vsphere(client, NULL, pool, 0, &hv),
                VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_hypervisor_open_vsphere(client, "/DC0/vm", pool, 0, NULL),
                VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_hypervisor_open_vsphere(client, "/DC0/vm/no-such-folder", pool, 0, &hv),
                VSDK_RESULT_INVALID_ENVIRONMENT);
    ASSERT(hv == NULL);
    CHECK(vsdk_hypervisor_open_vsphere(client, "/DC0/vm", pool, 0, &hv));

    /* Bad YAML, an unknown key, a bad VM name, two sources: nothing is created. */
    EXPECT_CODE(vsdk_env_parse(hv, "vms: [", NULL, &env), VSDK_RESULT_INVALID_ENVIRONMENT);
    EXPECT_CODE(vsdk_env_parse(hv, "vms:\n  web:\n    template: t\n    memroy: 1\n", NULL, &env),
                VSDK_RESULT_INVALID_ENVIRONMENT);
    ASSERT(strstr(vsdk_last_error(), "memroy") != NULL);
    EXPECT_CODE(vsdk_env_parse(hv, "vms:\n  ../x:\n    template: t\n", NULL, &env),
                VSDK_RESULT_INVALID_ENVIRONMENT);
    EXPECT_CODE(vsdk_env_parse(hv, "vms:\n  w:\n    template: t\n    image: /x.qcow2\n", NULL,
                               &env),
                VSDK_RESULT_INVALID_ENVIRONMENT);
    EXPECT_CODE(vsdk_env_parse(hv, NULL, NULL, &env), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_env_parse(NULL, "vms: {}", NULL, &env), VSDK_RESULT_NULL_PARAMETER);
    char path[4096];
    snprintf(path, sizeof path, "%s/no-such-env.yaml", scratch);
    EXPECT_CODE(vsdk_env_load(hv, path, &env), VSDK_RESULT_IO);
    ASSERT(env == NULL);

    /* A template VM that does not exist. */
    CHECK(vsdk_env_parse(hv, "vms:\n  e-web:\n    template: /DC0/vm/no-such-template\n", NULL,
                         &env));
    EXPECT_CODE(vsdk_env_up(env, 1000, NULL, NULL), VSDK_RESULT_INVALID_ENVIRONMENT);
    vsdk_env_free(env);
    /* What vSphere does not do: shared folders (VMs are routable; use sshfs). */
    CHECK(vsdk_env_parse(hv,
                         "vms:\n  e-share:\n    template: DC0_H0_VM0\n    shared_folders:\n"
                         "      - { name: s, host: /tmp, guest: /mnt/s }\n",
                         NULL, &env));
    EXPECT_CODE(vsdk_env_up(env, 1000, NULL, NULL), VSDK_RESULT_UNSUPPORTED);
    vsdk_env_free(env);
    /* An existing VM that differs from the file: refused, nothing changed. */
    CHECK(vsdk_env_parse(hv, "vms:\n  DC0_H0_VM0:\n    template: DC0_H0_VM1\n    cpus: 3\n",
                         NULL, &env));
    EXPECT_CODE(vsdk_env_up(env, 1000, NULL, NULL), VSDK_RESULT_INVALID_ENVIRONMENT);
    ASSERT(strstr(vsdk_last_error(), "differ") != NULL);
    vsdk_env_free(env);

    /* Unknown VMs, out-of-range indexes, NULL out-parameters. */
    CHECK(vsdk_env_parse(hv, "vms:\n  e-none:\n    template: DC0_H0_VM0\n", NULL, &env));
    vsdk_vm_list *vms = NULL;
    CHECK(vsdk_env_status(env, &vms));
    vsdk_vm_record vm;
    CHECK(vsdk_vm_list_find(vms, "e-none", &vm));
    ASSERT(vm.state == VSDK_VM_STATE_NONE && vm.ip == NULL);
    EXPECT_CODE(vsdk_vm_list_find(vms, "no-such-vm", &vm), VSDK_RESULT_UNKNOWN_VM);
    EXPECT_CODE(vsdk_vm_list_get(vms, 1, &vm), VSDK_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(vsdk_vm_list_get(vms, 0, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_vm_list_len(NULL, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_env_status(env, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_env_up(NULL, 1000, NULL, NULL), VSDK_RESULT_NULL_PARAMETER);
    EXPECT_CODE(vsdk_env_down(NULL, 1000, NULL, NULL), VSDK_RESULT_NULL_PARAMETER);
    /* Down with nothing created: nothing to do. */
    int events = 0;
    CHECK(vsdk_env_down(env, 1000, count_event, &events));
    ASSERT(events == 0);
    vsdk_vm_list_free(vms);
    vsdk_env_free(env);
    vsdk_hypervisor_free(hv);

    /* QEMU is selectable (not booted here): without QEMU on the machine it says so. */
    EXPECT_CODE(vsdk_hypervisor_open_qemu(NULL, NULL, &hv), VSDK_RESULT_NULL_PARAMETER);
    snprintf(path, sizeof path, "%s/qemu", scratch);
    vsdk_result r = vsdk_hypervisor_open_qemu(path, NULL, &hv);
    printf("  QEMU backend: %s %s\n", vsdk_result_name(r), vsdk_last_error());
    ASSERT(r == VSDK_RESULT_OK || r == VSDK_RESULT_UNSUPPORTED);
    if (r == VSDK_RESULT_OK) {
        const char *kind = NULL;
        CHECK(vsdk_hypervisor_kind(hv, &kind));
        ASSERT(strcmp(kind, "qemu") == 0);
        CHECK(vsdk_env_parse(hv, "vms:\n  q:\n    image: /no/such/disk.qcow2\n", NULL, &env));
        CHECK(vsdk_env_status(env, &vms));
        CHECK(vsdk_vm_list_find(vms, "q", &vm));
        ASSERT(vm.state == VSDK_VM_STATE_NONE);
        vsdk_vm_list_free(vms);
        vsdk_env_free(env);
        vsdk_hypervisor_free(hv);
    }
    vsdk_hypervisor_free(NULL);
    vsdk_env_free(NULL);
    vsdk_vm_list_free(NULL);
    CHECK(vsdk_client_disconnect(client));
    vsdk_sim_stop(sim);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: errors SCRATCH_DIR\n");
        return 2;
    }
    arguments();
    vsphere(argv[1]);
    volumes(argv[1]);
    pipelines(argv[1]);
    environments(argv[1]);
    printf("errors: OK\n");
    return 0;
}
