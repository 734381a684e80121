/* The shared store from C: four processes, forked before and after the store is opened, share
 * one quota (the limiter level and the gate); a sled store opened before fork() is refused in
 * the child with a clear error instead of hanging. */
#include "check.h"

#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4
#define CHECKS 1000
#define QUOTA 500

static char dir[256];
static char config[1024];

static void make_config(const char *kind, const char *sub) {
  snprintf(config, sizeof config,
           "[store]\n"
           "kind = \"%s\"\n"
           "path = \"%s/%s\"\n"
           "capacity = 1024\n"
           "[[policy]]\n"
           "name = \"api\"\n"
           "limit = \"500/h\"\n"
           "[[route]]\n"
           "match = \"/api/\"\n"
           "limits = [{ policy = \"api\", key = \"ip\" }]\n",
           kind, dir, sub);
}

/* The limiter level: `CHECKS` checks of one key; the exit status is the number allowed / 4
 * (exit codes stop at 255), the remainder through a pipe. */
static int limiter_checks(portcullis_limiter *limiter) {
  uint32_t api = 0;
  if (portcullis_limiter_policy(limiter, S("api"), &api) != PORTCULLIS_RESULT_OK) return -1;
  int allowed = 0;
  for (int i = 0; i < CHECKS; i++) {
    portcullis_decision d;
    if (portcullis_limiter_check(limiter, api, S("one-client"), 1, &d) != PORTCULLIS_RESULT_OK)
      return -1;
    allowed += d.allowed;
  }
  return allowed;
}

static int gate_checks(portcullis_gate *gate) {
  portcullis_request req = {0};
  req.method = STR("GET");
  req.path = STR("/api/things");
  req.client_ip = STR("203.0.113.9");
  int allowed = 0;
  for (int i = 0; i < CHECKS; i++) {
    portcullis_outcome *o = NULL;
    if (portcullis_gate_decide(gate, &req, &o) != PORTCULLIS_RESULT_OK) return -1;
    portcullis_outcome_info info;
    if (portcullis_outcome_get_info(o, &info) != PORTCULLIS_RESULT_OK) return -1;
    allowed += info.action == PORTCULLIS_ACTION_PASS;
    portcullis_outcome_free(o);
  }
  return allowed;
}

/* Runs `work` in WORKERS children and returns the total they report through a pipe. `before`
 * is a handle opened before the forks (or NULL: each child opens its own). */
static int run(int use_gate, void *before) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  for (int w = 0; w < WORKERS; w++) {
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      int allowed = -1;
      if (use_gate) {
        portcullis_gate *gate = before;
        if (gate == NULL && portcullis_gate_open(S(config), &gate) != PORTCULLIS_RESULT_OK) _exit(2);
        allowed = gate_checks(gate);
        portcullis_gate_free(gate); /* never hangs in a child */
      } else {
        portcullis_limiter *limiter = before;
        if (limiter == NULL && portcullis_limiter_open(S(config), &limiter) != PORTCULLIS_RESULT_OK)
          _exit(2);
        allowed = limiter_checks(limiter);
        portcullis_limiter_free(limiter);
      }
      if (write(fds[1], &allowed, sizeof allowed) != sizeof allowed) _exit(3);
      _exit(0);
    }
  }
  close(fds[1]);
  int total = 0, got = 0, n;
  while (read(fds[0], &n, sizeof n) == sizeof n) {
    if (n < 0) return -1;
    total += n;
    got++;
  }
  close(fds[0]);
  for (int w = 0; w < WORKERS; w++) {
    int status = 0;
    wait(&status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  CHECK(got == WORKERS);
  return total;
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/portcullis-c-shared-%d", (int)getpid());

  /* Opened after fork(): each worker opens the folder. */
  make_config("shared", "after");
  CHECK(run(0, NULL) == QUOTA);
  make_config("shared", "gate-after");
  CHECK(run(1, NULL) == QUOTA);

  /* Opened before fork() (a pre-forking server, the nginx master, gunicorn --preload). */
  make_config("shared", "before");
  portcullis_limiter *limiter = NULL;
  OK(portcullis_limiter_open(S(config), &limiter));
  CHECK(run(0, limiter) == QUOTA);
  portcullis_limiter_free(limiter);

  make_config("shared", "gate-before");
  portcullis_gate *gate = NULL;
  OK(portcullis_gate_open(S(config), &gate));
  CHECK(run(1, gate) == QUOTA);
  portcullis_gate_free(gate);

  /* A sled store opened before fork(): the child gets an error naming the shared store, and
   * freeing it there returns. */
  make_config("sled", "sled");
  limiter = NULL;
  OK(portcullis_limiter_open(S(config), &limiter));
  pid_t pid = fork();
  if (pid == 0) {
    uint32_t api = 0;
    portcullis_decision d;
    int ok = portcullis_limiter_policy(limiter, S("api"), &api) == PORTCULLIS_RESULT_OK &&
             portcullis_limiter_check(limiter, api, S("k"), 1, &d) == PORTCULLIS_RESULT_STORE_FORKED &&
             strstr(last_error(), "kind = \"shared\"") != NULL;
    portcullis_limiter_free(limiter);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* The parent's store still works. */
  uint32_t api = 0;
  portcullis_decision d;
  OK(portcullis_limiter_policy(limiter, S("api"), &api));
  OK(portcullis_limiter_check(limiter, api, S("k"), 1, &d));
  CHECK(d.allowed);
  portcullis_limiter_free(limiter);

  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  if (failures) {
    fprintf(stderr, "shared: %d failure(s)\n", failures);
    return 1;
  }
  printf("shared: ok\n");
  return 0;
}
