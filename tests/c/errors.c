/* Every error code on bad input, each with a message; nothing crashes and nothing is lost. */
#include "check.h"

static const char *CONFIG =
    "[[policy]]\n"
    "name = \"api\"\n"
    "limit = \"10/s\"\n"
    "[[policy]]\n"
    "name = \"export\"\n"
    "algorithm = \"concurrency\"\n"
    "limit = 2\n"
    "lease_timeout = \"1m\"\n";

static void null_pointers(portcullis_limiter *limiter) {
  portcullis_decision d;
  portcullis_limiter *l = NULL;
  EXPECT(portcullis_limiter_open(NULL, 5, &l), PORTCULLIS_RESULT_NULL_PARAMETER);
  CHECK(error_mentions("config is NULL"));
  EXPECT(portcullis_limiter_open(S(CONFIG), NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  CHECK(error_mentions("out_limiter"));
  EXPECT(portcullis_limiter_check(NULL, 0, S("k"), 1, &d), PORTCULLIS_RESULT_NULL_PARAMETER);
  CHECK(error_mentions("limiter is NULL"));
  EXPECT(portcullis_limiter_check(limiter, 0, NULL, 3, 1, &d),
         PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_limiter_check(limiter, 0, S("k"), 1, NULL),
         PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_limiter_release(limiter, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_limiter_headers(limiter, 0, NULL, 1, NULL),
         PORTCULLIS_RESULT_NULL_PARAMETER);
  portcullis_gate *g = NULL;
  EXPECT(portcullis_gate_open(NULL, 1, &g), PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_gate_decide(NULL, NULL, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_outcome_get_info(NULL, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_cors_decide(NULL, NULL, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  EXPECT(portcullis_headers_count(NULL, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  size_t len;
  EXPECT(portcullis_last_error(NULL, 0, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  (void)len;
  /* An empty key may be NULL with length 0. */
  OK(portcullis_limiter_check(limiter, 0, NULL, 0, 1, &d));
  CHECK(d.allowed);
}

static void bad_text(portcullis_limiter *limiter) {
  const uint8_t bad[] = {'a', 'p', 0xff, 'i'};
  uint32_t id;
  EXPECT(portcullis_limiter_policy(limiter, bad, sizeof bad, &id),
         PORTCULLIS_RESULT_INVALID_UTF8);
  CHECK(error_mentions("not valid UTF-8"));
  portcullis_limiter *l = NULL;
  EXPECT(portcullis_limiter_open(bad, sizeof bad, &l), PORTCULLIS_RESULT_INVALID_UTF8);
  CHECK(l == NULL);
  /* Keys are bytes: invalid UTF-8 is a fine key. */
  portcullis_decision d;
  OK(portcullis_limiter_check(limiter, 0, bad, sizeof bad, 1, &d));
  CHECK(d.allowed);
}

static void bad_configs(void) {
  portcullis_limiter *l = NULL;
  EXPECT(portcullis_limiter_open(S("[[policy]]\nname = \"zero\"\nlimit = \"0/s\"\n"), &l),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(error_mentions("3:9: policy"));
  CHECK(l == NULL);
  EXPECT(portcullis_limiter_open(
             S("[[policy]]\nname = \"huge\"\nlimit = \"99999999999999/s\"\n"), &l),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(error_mentions("3:9: policy"));
  EXPECT(portcullis_limiter_open(S("[[policy]]\nname = \"w\"\nlimit = \"5/0s\"\n"), &l),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  EXPECT(portcullis_limiter_open(S("[[policy]]\nname = \"x\"\nlimt = \"5/s\"\n"), &l),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(error_mentions("limt"));
  EXPECT(portcullis_limiter_open(S("this is not toml"), &l), PORTCULLIS_RESULT_INVALID_CONFIG);
  EXPECT(portcullis_limiter_open_file(S("/nonexistent/portcullis.toml"), &l),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(error_mentions("/nonexistent/portcullis.toml"));
  portcullis_cors *c = NULL;
  EXPECT(portcullis_cors_open(S(CONFIG), &c), PORTCULLIS_RESULT_INVALID_CORS_POLICY);
  CHECK(error_mentions("no [cors] table"));
  EXPECT(portcullis_cors_open(
             S("[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n"), &c),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(c == NULL);
}

static void bad_arguments(portcullis_limiter *limiter) {
  portcullis_decision d;
  uint32_t id;
  EXPECT(portcullis_limiter_policy(limiter, S("nope"), &id), PORTCULLIS_RESULT_UNKNOWN_POLICY);
  CHECK(error_mentions("nope"));
  EXPECT(portcullis_limiter_check(limiter, 7, S("k"), 1, &d), PORTCULLIS_RESULT_UNKNOWN_POLICY);
  EXPECT(portcullis_limiter_check(limiter, 0, S("k"), 1000, &d),
         PORTCULLIS_RESULT_COST_TOO_HIGH);
  EXPECT(portcullis_limiter_check(limiter, 1, S("k"), 1, &d), PORTCULLIS_RESULT_NEEDS_LEASE);
  portcullis_lease *lease = NULL;
  EXPECT(portcullis_limiter_acquire(limiter, 0, S("k"), 1, &d, &lease),
         PORTCULLIS_RESULT_NOT_CONCURRENCY);
  CHECK(lease == NULL);
  OK(portcullis_limiter_check(limiter, 0, S("k"), 1, &d));
  portcullis_headers *h = NULL;
  EXPECT(portcullis_limiter_headers(limiter, 9, &d, 1, &h), PORTCULLIS_RESULT_INVALID_PARAMETER);
  d.policy = 42;
  EXPECT(portcullis_limiter_headers(limiter, 0, &d, 1, &h), PORTCULLIS_RESULT_UNKNOWN_POLICY);
  CHECK(h == NULL);
  OK(portcullis_limiter_headers(limiter, 0, &d, 0, &h));
  portcullis_str n, v;
  EXPECT(portcullis_headers_get(h, 0, &n, &v), PORTCULLIS_RESULT_OUT_OF_RANGE);
  portcullis_headers_free(h);

  /* A message longer than the buffer: INSUFFICIENT_SIZE, the length, the message kept. */
  EXPECT(portcullis_limiter_policy(limiter, S("nope"), &id), PORTCULLIS_RESULT_UNKNOWN_POLICY);
  char tiny[4];
  size_t len = 0;
  EXPECT(portcullis_last_error((uint8_t *)tiny, sizeof tiny, &len),
         PORTCULLIS_RESULT_INSUFFICIENT_SIZE);
  CHECK(len > sizeof tiny);
  CHECK(error_mentions("nope"));

  CHECK(strcmp(portcullis_result_name(PORTCULLIS_RESULT_STORE_LOCKED),
               "PORTCULLIS_RESULT_STORE_LOCKED") == 0);
  CHECK(strcmp(portcullis_result_name(12345), "PORTCULLIS_RESULT_UNKNOWN") == 0);
}

static void bad_gate_requests(void) {
  portcullis_gate *gate = NULL;
  OK(portcullis_gate_open(S("[[policy]]\nname = \"api\"\nlimit = \"1/s\"\n"
                            "[[route]]\nmatch = \"/\"\nlimits = [{ policy = \"api\", key = \"ip\" }]\n"),
                          &gate));
  portcullis_request r;
  memset(&r, 0, sizeof r);
  portcullis_outcome *o = NULL;
  EXPECT(portcullis_gate_decide(gate, &r, &o), PORTCULLIS_RESULT_NULL_PARAMETER);
  CHECK(error_mentions("request.method"));
  r.method = STR("GET");
  r.path = STR("/x");
  r.client_ip = STR("not-an-ip");
  EXPECT(portcullis_gate_decide(gate, &r, &o), PORTCULLIS_RESULT_INVALID_PARAMETER);
  CHECK(error_mentions("not-an-ip"));
  CHECK(o == NULL);
  EXPECT(portcullis_gate_reset(gate, S("api"), 7, S("1.2.3.4"), NULL),
         PORTCULLIS_RESULT_INVALID_PARAMETER);
  EXPECT(portcullis_gate_reset(gate, S("nope"), PORTCULLIS_KEY_KIND_IP, S("1.2.3.4"), NULL),
         PORTCULLIS_RESULT_UNKNOWN_POLICY);
  portcullis_gate_free(gate);
}

static void store_in_use(void) {
  char dir[] = "/tmp/portcullis-c-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char config[1024];
  snprintf(config, sizeof config,
           "[store]\nkind = \"sled\"\npath = \"%s/store\"\n"
           "[[policy]]\nname = \"api\"\nlimit = \"10/s\"\n",
           dir);
  portcullis_limiter *first = NULL, *second = NULL;
  OK(portcullis_limiter_open(S(config), &first));
  EXPECT(portcullis_limiter_open(S(config), &second), PORTCULLIS_RESULT_STORE_LOCKED);
  CHECK(error_mentions(dir));
  CHECK(second == NULL);
  portcullis_gate *gate = NULL;
  EXPECT(portcullis_gate_open(S(config), &gate), PORTCULLIS_RESULT_STORE_LOCKED);
  portcullis_limiter_free(first);
  /* Freed: the store can be opened again. */
  OK(portcullis_limiter_open(S(config), &second));
  portcullis_limiter_free(second);
  /* A folder that is not a store. */
  char foreign[128];
  snprintf(foreign, sizeof foreign, "%s/foreign", dir);
  FILE *f = fopen(foreign, "w");
  CHECK(f != NULL);
  if (f) {
    fputs("not a store", f);
    fclose(f);
  }
  snprintf(config, sizeof config,
           "[store]\nkind = \"sled\"\npath = \"%s\"\n[[policy]]\nname = \"api\"\nlimit = \"10/s\"\n",
           foreign);
  portcullis_result r = portcullis_limiter_open(S(config), &second);
  CHECK(r == PORTCULLIS_RESULT_STORE_IO || r == PORTCULLIS_RESULT_STORE_FOREIGN ||
        r == PORTCULLIS_RESULT_STORE_CORRUPT);
  CHECK(error_mentions(foreign));
  char command[256];
  snprintf(command, sizeof command, "rm -rf '%s'", dir);
  CHECK(system(command) == 0);
}

int main(void) {
  portcullis_limiter *limiter = NULL;
  OK(portcullis_limiter_open(S(CONFIG), &limiter));
  null_pointers(limiter);
  bad_text(limiter);
  bad_configs();
  bad_arguments(limiter);
  bad_gate_requests();
  store_in_use();
  portcullis_limiter_free(limiter);
  portcullis_limiter_free(NULL);
  return finish("errors");
}
