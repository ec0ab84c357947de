/* Two threads, two handles each (a client and a volumes handle), used at the same time
 * against one simulator: no global state is shared, and each thread's last error is its own.
 * Usage: threads SCRATCH_DIR */
#include <pthread.h>

#include "check.h"

static const char *sim_url;
static const char *scratch;

struct worker {
    int index;
    int vms_seen;
    int moves;
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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: threads SCRATCH_DIR\n");
        return 2;
    }
    scratch = argv[1];
    vsdk_sim *sim = NULL;
    CHECK(vsdk_sim_start(false, &sim));
    CHECK(vsdk_sim_url_with_credentials(sim, &sim_url));
    struct worker workers[2] = {{0, 0, 0}, {1, 0, 0}};
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
    }
    vsdk_sim_stop(sim);
    printf("threads: OK\n");
    return 0;
}
