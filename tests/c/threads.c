/* Four threads share one limiter and one gate: the allowed count is exact. */
#include "check.h"

#include <pthread.h>

#define THREADS 4
#define TRIES 600
#define QUOTA 1000

static const char *CONFIG =
    "[[policy]]\n"
    "name = \"api\"\n"
    "algorithm = \"fixed_window\"\n"
    "limit = \"1000/h\"\n"
    "[[route]]\n"
    "match = \"/api/\"\n"
    "limits = [{ policy = \"api\", key = \"principal\" }]\n";

static const uint64_t T0 = 1700000000ull * 1000000000ull;

static portcullis_limiter *limiter;
static portcullis_gate *gate;
static pthread_barrier_t start;

struct counts {
  int allowed;
  int denied;
  int errors;
};

static void *limiter_worker(void *arg) {
  struct counts *c = arg;
  pthread_barrier_wait(&start);
  for (int i = 0; i < TRIES; i++) {
    portcullis_decision d;
    if (portcullis_limiter_check_at(limiter, 0, S("shared-key"), 1, T0 + (uint64_t)i, &d) !=
        PORTCULLIS_RESULT_OK) {
      c->errors++;
    } else if (d.allowed) {
      c->allowed++;
    } else {
      c->denied++;
    }
  }
  return NULL;
}

static void *gate_worker(void *arg) {
  struct counts *c = arg;
  portcullis_request r;
  memset(&r, 0, sizeof r);
  r.method = STR("GET");
  r.path = STR("/api/items");
  r.principal = STR("key-123");
  pthread_barrier_wait(&start);
  for (int i = 0; i < TRIES; i++) {
    portcullis_outcome *o = NULL;
    portcullis_outcome_info info;
    if (portcullis_gate_decide_at(gate, &r, T0 + (uint64_t)i, &o) != PORTCULLIS_RESULT_OK ||
        portcullis_outcome_get_info(o, &info) != PORTCULLIS_RESULT_OK) {
      c->errors++;
    } else if (info.action == PORTCULLIS_ACTION_PASS) {
      c->allowed++;
    } else if (info.action == PORTCULLIS_ACTION_LIMITED && info.status == 429) {
      c->denied++;
    } else {
      c->errors++;
    }
    portcullis_outcome_free(o);
  }
  return NULL;
}

static void run(void *(*worker)(void *), const char *what) {
  pthread_t threads[THREADS];
  struct counts counts[THREADS];
  memset(counts, 0, sizeof counts);
  CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
  for (int t = 0; t < THREADS; t++) {
    CHECK(pthread_create(&threads[t], NULL, worker, &counts[t]) == 0);
  }
  struct counts total = {0, 0, 0};
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    total.allowed += counts[t].allowed;
    total.denied += counts[t].denied;
    total.errors += counts[t].errors;
  }
  pthread_barrier_destroy(&start);
  printf("%s: %d allowed, %d denied, %d errors\n", what, total.allowed, total.denied,
         total.errors);
  CHECK(total.allowed == QUOTA);
  CHECK(total.denied == THREADS * TRIES - QUOTA);
  CHECK(total.errors == 0);
}

int main(void) {
  OK(portcullis_limiter_open(S(CONFIG), &limiter));
  OK(portcullis_gate_open(S(CONFIG), &gate));
  run(limiter_worker, "limiter");
  run(gate_worker, "gate");
  portcullis_limiter_free(limiter);
  portcullis_gate_free(gate);
  return finish("threads");
}
