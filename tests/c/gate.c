/* The gate over the C ABI: preflights, CORS on a 429, rate-limit headers, reset, stats. */
#include "check.h"

static const char *CONFIG =
    "header_style = \"both\"\n"
    "[store]\n"
    "kind = \"memory\"\n"
    "[[policy]]\n"
    "name = \"login\"\n"
    "algorithm = \"fixed_window\"\n"
    "limit = \"5/15m\"\n"
    "block = \"15m\"\n"
    "[[route]]\n"
    "match = \"POST /login\"\n"
    "limits = [{ policy = \"login\", key = \"ip\" }]\n"
    "[cors]\n"
    "allowed_origins = [\"https://app.example.com\"]\n"
    "allow_credentials = true\n"
    "allowed_methods = [\"POST\"]\n"
    "allowed_headers = [\"Content-Type\"]\n";

static const uint64_t T0 = 1700000000ull * 1000000000ull;

/* The value of a header of an outcome, or NULL; copied into a static buffer. */
static const char *header(const portcullis_outcome *o, const char *name) {
  static char value[512];
  size_t count = 0;
  OK(portcullis_outcome_header_count(o, &count));
  for (size_t i = 0; i < count; i++) {
    portcullis_str n, v;
    OK(portcullis_outcome_header(o, i, &n, &v));
    if (n.len == strlen(name) && strncasecmp((const char *)n.ptr, name, n.len) == 0 &&
        v.len < sizeof value) {
      memcpy(value, v.ptr, v.len);
      value[v.len] = '\0';
      return value;
    }
  }
  return NULL;
}

static portcullis_request login(void) {
  portcullis_request r;
  memset(&r, 0, sizeof r);
  r.method = STR("POST");
  r.path = STR("/login");
  r.origin = STR("https://app.example.com");
  r.client_ip = STR("203.0.113.9");
  return r;
}

int main(void) {
  CHECK(portcullis_abi_version() == PORTCULLIS_ABI_VERSION);
  CHECK(strcmp(portcullis_version(), PORTCULLIS_VERSION) == 0);

  portcullis_gate *gate = NULL;
  OK(portcullis_gate_open(S(CONFIG), &gate));
  CHECK(gate != NULL);

  /* A local store: decisions never wait on the network (nginx and Node accept it). */
  bool may_block = true;
  OK(portcullis_gate_may_block(gate, &may_block));
  CHECK(!may_block);
  CHECK(portcullis_gate_may_block(gate, NULL) == PORTCULLIS_RESULT_NULL_PARAMETER);

  /* A preflight: 204, never charged. */
  portcullis_request pre;
  memset(&pre, 0, sizeof pre);
  pre.method = STR("OPTIONS");
  pre.path = STR("/login");
  pre.origin = STR("https://app.example.com");
  pre.request_method = STR("POST");
  pre.request_headers = STR("content-type");
  pre.client_ip = STR("203.0.113.9");
  for (int i = 0; i < 10; i++) {
    portcullis_outcome *o = NULL;
    OK(portcullis_gate_decide_at(gate, &pre, T0, &o));
    portcullis_outcome_info info;
    OK(portcullis_outcome_get_info(o, &info));
    CHECK(info.action == PORTCULLIS_ACTION_PREFLIGHT);
    CHECK(info.status == 204);
    const char *acao = header(o, "Access-Control-Allow-Origin");
    CHECK(acao != NULL && strcmp(acao, "https://app.example.com") == 0);
    portcullis_outcome_free(o);
  }

  /* Five logins pass with decreasing X-RateLimit-Remaining; the sixth is a 429 with CORS. */
  portcullis_request req = login();
  for (int i = 0; i < 5; i++) {
    portcullis_outcome *o = NULL;
    OK(portcullis_gate_decide_at(gate, &req, T0 + (uint64_t)i * 1000000ull, &o));
    portcullis_outcome_info info;
    OK(portcullis_outcome_get_info(o, &info));
    CHECK(info.action == PORTCULLIS_ACTION_PASS);
    CHECK(info.status == 0);
    CHECK(info.remaining == (uint32_t)(4 - i));
    CHECK(info.limit == 5);
    char expected[16];
    snprintf(expected, sizeof expected, "%d", 4 - i);
    const char *remaining = header(o, "X-RateLimit-Remaining");
    CHECK(remaining != NULL && strcmp(remaining, expected) == 0);
    const char *exposed = header(o, "Access-Control-Expose-Headers");
    CHECK(exposed != NULL && strstr(exposed, "X-RateLimit-Remaining") != NULL);
    portcullis_outcome_free(o);
  }
  portcullis_outcome *o = NULL;
  OK(portcullis_gate_decide_at(gate, &req, T0 + 10000000ull, &o));
  portcullis_outcome_info info;
  OK(portcullis_outcome_get_info(o, &info));
  CHECK(info.action == PORTCULLIS_ACTION_LIMITED);
  CHECK(info.status == 429);
  CHECK(info.retry_after_secs == 900); /* blocked for 15 minutes */
  const char *retry = header(o, "Retry-After");
  CHECK(retry != NULL && strcmp(retry, "900") == 0);
  const char *acao = header(o, "Access-Control-Allow-Origin");
  CHECK(acao != NULL && strcmp(acao, "https://app.example.com") == 0);
  const char *credentials = header(o, "Access-Control-Allow-Credentials");
  CHECK(credentials != NULL && strcmp(credentials, "true") == 0);
  portcullis_str reason, policy;
  OK(portcullis_outcome_reason(o, &reason));
  CHECK(str_is(reason, "limited by policy login for ip:203.0.113.9 on route POST /login"));
  OK(portcullis_outcome_limited_by(o, &policy));
  CHECK(str_is(policy, "login"));
  portcullis_str n, v;
  size_t count = 0;
  OK(portcullis_outcome_header_count(o, &count));
  EXPECT(portcullis_outcome_header(o, count, &n, &v), PORTCULLIS_RESULT_OUT_OF_RANGE);
  portcullis_outcome_free(o);

  /* Another client is not affected; a refused origin gets a 403 with no CORS headers. */
  portcullis_request other = login();
  other.client_ip = STR("198.51.100.7");
  OK(portcullis_gate_decide_at(gate, &other, T0 + 10000000ull, &o));
  OK(portcullis_outcome_get_info(o, &info));
  CHECK(info.action == PORTCULLIS_ACTION_PASS);
  portcullis_outcome_free(o);
  portcullis_request evil = pre;
  evil.origin = STR("https://evil.example.net");
  OK(portcullis_gate_decide_at(gate, &evil, T0, &o));
  OK(portcullis_outcome_get_info(o, &info));
  CHECK(info.action == PORTCULLIS_ACTION_FORBIDDEN);
  CHECK(info.status == 403);
  CHECK(header(o, "Access-Control-Allow-Origin") == NULL);
  portcullis_outcome_free(o);

  /* Reset unblocks the client. */
  bool had = false;
  OK(portcullis_gate_reset(gate, S("login"), PORTCULLIS_KEY_KIND_IP, S("203.0.113.9"), &had));
  CHECK(had);
  OK(portcullis_gate_decide_at(gate, &req, T0 + 20000000ull, &o));
  OK(portcullis_outcome_get_info(o, &info));
  CHECK(info.action == PORTCULLIS_ACTION_PASS);
  portcullis_outcome_free(o);

  /* One outcome reused across requests: each decision replaces the last. */
  portcullis_outcome *reused = NULL;
  OK(portcullis_outcome_new(&reused));
  for (int i = 0; i < 6; i++) {
    OK(portcullis_gate_decide_into_at(gate, &other, T0 + 30000000ull, reused));
    OK(portcullis_outcome_get_info(reused, &info));
    /* 198.51.100.7 made one login above: four more pass, then 429s. */
    CHECK(info.action == (i < 4 ? PORTCULLIS_ACTION_PASS : PORTCULLIS_ACTION_LIMITED));
    OK(portcullis_outcome_reason(reused, &reason));
    CHECK(str_is(reason, i < 4 ? "allowed"
                               : "limited by policy login for ip:198.51.100.7 on route POST /login"));
  }
  OK(portcullis_gate_decide_into_at(gate, &pre, T0, reused));
  OK(portcullis_outcome_get_info(reused, &info));
  CHECK(info.action == PORTCULLIS_ACTION_PREFLIGHT && info.remaining == UINT32_MAX);
  EXPECT(portcullis_gate_decide_into(gate, &pre, NULL), PORTCULLIS_RESULT_NULL_PARAMETER);
  portcullis_outcome_free(reused);

  /* Stats as JSON: too small a buffer tells the size needed. */
  size_t needed = 0;
  char small[8];
  EXPECT(portcullis_gate_stats_json(gate, (uint8_t *)small, sizeof small, &needed),
         PORTCULLIS_RESULT_INSUFFICIENT_SIZE);
  CHECK(needed > sizeof small);
  char *json = malloc(needed + 1);
  size_t len = 0;
  OK(portcullis_gate_stats_json(gate, (uint8_t *)json, needed + 64, &len));
  json[len] = '\0';
  CHECK(strstr(json, "\"preflights\":11") != NULL); /* 10, then one decided into */
  CHECK(strstr(json, "\"cors_refused\":1") != NULL);
  CHECK(strstr(json, "203.0.113.9") != NULL);
  free(json);

  /* A reload keeps the counters of the unchanged policy; a bad one is refused. */
  OK(portcullis_gate_reload(gate, S(CONFIG)));
  /* The login policy did not change: 198.51.100.7 stays limited across the reload. */
  OK(portcullis_gate_decide_at(gate, &other, T0 + 40000000ull, &o));
  OK(portcullis_outcome_get_info(o, &info));
  CHECK(info.action == PORTCULLIS_ACTION_LIMITED);
  portcullis_outcome_free(o);
  EXPECT(portcullis_gate_reload(gate, S("[[policy]]\nname = \"x\"\nlimit = \"0/s\"\n")),
         PORTCULLIS_RESULT_INVALID_CONFIG);
  CHECK(error_mentions("3:9: policy \"x\""));

  OK(portcullis_gate_close(gate));
  EXPECT(portcullis_gate_decide_at(gate, &req, T0, &o), PORTCULLIS_RESULT_CLOSED);
  portcullis_gate_free(gate);
  portcullis_gate_free(NULL);
  return finish("gate");
}
