/* Two threads, each with its own handles (a client, a volumes handle, an environment on the
 * vSphere backend), used at the same time against one simulator: no global state is shared,
 * and each thread's last error is its own. Then run control across threads: one thread drives
 * a pipeline run while another pauses it, then cancels a second one.
 * Usage: threads SCRATCH_DIR */
#include <pthread.h>
#include <time.h>

#include "check.h"

static const char *sim_url;
static const char *scratch;

struct worker {
    int index;
    int vms_seen;
    int moves;
    int env_up;
};

static void *work(void *arg) {
    struct worker *w = (struct worker *)arg;
    vsdk_client *client = NULL;
    CHECK(vsdk_client_connect(sim_url, NULL, NULL, NULL, false, &client));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/volumes-%d", scratch, w->index);
    vsdk_volumes *vols = NULL;
    CHECK(vsdk_volumes_open_memory(dir, &vols));
    char name[64];
    snprintf(name, sizeof name, "thread-%d", w->index);
    char *id = NULL;
    CHECK(vsdk_volume_create(vols, name, 1u << 20, &id));
    const char *props[] = {"name"};
    for (int round = 0; round < 5; round++) {
        vsdk_objects *vms = NULL;
        CHECK(vsdk_client_list(client, "VirtualMachine", props, 1, &vms));
        size_t n = 0;
        CHECK(vsdk_objects_len(vms, &n));
        w->vms_seen = (int)n;
        vsdk_objects_free(vms);
        /* This thread's failure leaves this thread's message, whatever the other does. */
        char *node = NULL;
        EXPECT_CODE(vsdk_volume_node(vols, name, &node), VSDK_RESULT_UNKNOWN_VOLUME);
        ASSERT(strstr(vsdk_last_error(), name) != NULL);
        CHECK(vsdk_volume_move(vols, id, round % 2 ? "node-a" : "node-b", true, NULL, NULL));
        ASSERT(strlen(vsdk_last_error()) == 0);
        w->moves++;
    }
    /* Each thread brings its own one-VM environment up and down. */
    vsdk_hypervisor *hv = NULL;
    CHECK(vsdk_hypervisor_open_vsphere(client, "/DC0/vm", "/DC0/host/DC0_C0/Resources", 0, &hv));
    char yaml[256];
    snprintf(yaml, sizeof yaml, "vms:\n  thread-vm-%d:\n    template: DC0_H0_VM0\n", w->index);
    vsdk_env *env = NULL;
    CHECK(vsdk_env_parse(hv, yaml, NULL, &env));
    CHECK(vsdk_env_up(env, 10000, NULL, NULL));
    vsdk_vm_list *vms = NULL;
    CHECK(vsdk_env_status(env, &vms));
    vsdk_vm_record vm;
    CHECK(vsdk_vm_list_get(vms, 0, &vm));
    w->env_up = vm.state == VSDK_VM_STATE_RUNNING && vm.ip != NULL;
    vsdk_vm_list_free(vms);
    CHECK(vsdk_env_down(env, 1000, NULL, NULL));
    vsdk_env_free(env);
    vsdk_hypervisor_free(hv);

    char *fcd = NULL;
    snprintf(name, sizeof name, "thread-disk-%d", w->index);
    CHECK(vsdk_fcd_create(client, name, 8, "LocalDS_0", NULL, NULL, &fcd));
    CHECK(vsdk_fcd_delete(client, fcd, "LocalDS_0"));
    vsdk_string_free(fcd);
    vsdk_string_free(id);
    vsdk_volumes_free(vols);
    CHECK(vsdk_client_disconnect(client));
    return NULL;
}

/* One run driven on a thread of its own; the main thread waits for its first task to start. */
struct driven {
    vsdk_pipelines *pipelines;
    const char *run;
    pthread_mutex_t lock;
    pthread_cond_t started;
    int task_started;
    vsdk_run_outcome outcome;
};

static void on_run_event(void *user_data, const char *event) {
    struct driven *d = (struct driven *)user_data;
    printf("    event: %s\n", event);
    if (strstr(event, "attempt 1 started") != NULL) {
        pthread_mutex_lock(&d->lock);
        d->task_started = 1;
        pthread_cond_signal(&d->started);
        pthread_mutex_unlock(&d->lock);
    }
}

static void *drive(void *arg) {
    struct driven *d = (struct driven *)arg;
    CHECK(vsdk_pipeline_drive(d->pipelines, d->run, on_run_event, d, &d->outcome, NULL));
    return NULL;
}

/* Starts `def` and drives it on a new thread; returns once its first task runs. */
static void start_driven(struct driven *d, vsdk_pipelines *p, vsdk_pipeline *def, char **run,
                         pthread_t *thread) {
    CHECK(vsdk_pipeline_start(p, def, NULL, 0, "ann", run));
    d->pipelines = p;
    d->run = *run;
    d->task_started = 0;
    ASSERT(pthread_create(thread, NULL, drive, d) == 0);
    pthread_mutex_lock(&d->lock);
    while (!d->task_started) {
        pthread_cond_wait(&d->started, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
}

static void run_control(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pipelines", scratch);
    vsdk_pipelines *p = NULL;
    CHECK(vsdk_pipelines_open(dir, &p));
    struct driven d;
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.started, NULL);
    vsdk_run_status status;
    pthread_t thread;
    char *run = NULL;

    /* Pause while the first task runs: it finishes, the second does not start. */
    vsdk_pipeline *def = NULL;
    CHECK(vsdk_pipeline_parse(p,
                              "kind: PIPELINE\nname: pausable\nstageOrder: [S]\nstages:\n"
                              "  S:\n    taskOrder: [first, second]\n    tasks:\n"
                              "      first:\n        type: Shell\n        input:\n"
                              "          script: sleep 1\n"
                              "      second:\n        type: Shell\n        input:\n"
                              "          script: echo second\n",
                              &def));
    start_driven(&d, p, def, &run, &thread);
    CHECK(vsdk_pipeline_pause(p, run, "hold on"));
    ASSERT(pthread_join(thread, NULL) == 0);
    ASSERT(d.outcome == VSDK_RUN_OUTCOME_PAUSED);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_PAUSED);
    vsdk_run_outcome outcome;
    CHECK(vsdk_pipeline_resume(p, run, NULL, NULL, &outcome, NULL));
    ASSERT(outcome == VSDK_RUN_OUTCOME_SUCCEEDED);
    printf("run %s paused from another thread, then resumed\n", run);
    vsdk_string_free(run);
    vsdk_pipeline_free(def);

    /* A hard cancel kills a task that would run for a minute. */
    CHECK(vsdk_pipeline_parse(p,
                              "kind: PIPELINE\nname: endless\nstageOrder: [S]\nstages:\n"
                              "  S:\n    taskOrder: [slow]\n    tasks:\n"
                              "      slow:\n        type: Shell\n        input:\n"
                              "          script: sleep 60\n",
                              &def));
    time_t before = time(NULL);
    start_driven(&d, p, def, &run, &thread);
    CHECK(vsdk_pipeline_cancel(p, run, true, "no time"));
    ASSERT(pthread_join(thread, NULL) == 0);
    ASSERT(d.outcome == VSDK_RUN_OUTCOME_CANCELLED);
    ASSERT(time(NULL) - before < 30);
    CHECK(vsdk_pipeline_status(p, run, &status, NULL));
    ASSERT(status == VSDK_RUN_STATUS_CANCELLED);
    printf("run %s cancelled from another thread after %lds\n", run, (long)(time(NULL) - before));
    vsdk_string_free(run);
    vsdk_pipeline_free(def);
    pthread_cond_destroy(&d.started);
    pthread_mutex_destroy(&d.lock);
    vsdk_pipelines_free(p);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: threads SCRATCH_DIR\n");
        return 2;
    }
    scratch = argv[1];
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(false, &sim));
    CHECK(vsdk_sim_url_with_credentials(sim, &sim_url));
    struct worker workers[2] = {{0, 0, 0, 0}, {1, 0, 0, 0}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        ASSERT(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        ASSERT(pthread_join(threads[i], NULL) == 0);
    }
    for (int i = 0; i < 2; i++) {
        printf("thread %d: %d VMs, %d moves\n", i, workers[i].vms_seen, workers[i].moves);
        ASSERT(workers[i].vms_seen >= 2);
        ASSERT(workers[i].moves == 5);
        ASSERT(workers[i].env_up);
    }
    vsdk_sim_stop(sim);
    run_control();
    printf("threads: OK\n");
    return 0;
}
