/* The limiter and CORS levels over the C ABI, at explicit times. */
#include "check.h"

static const char *CONFIG =
    "[[policy]]\n"
    "name = \"api\"\n"
    "limit = \"10/s\"\n"
    "burst = 3\n"
    "[[policy]]\n"
    "name = \"export\"\n"
    "algorithm = \"concurrency\"\n"
    "limit = 2\n"
    "lease_timeout = \"1m\"\n"
    "[cors]\n"
    "allowed_origins = [\"https://*.example.com\"]\n"
    "allowed_methods = [\"PUT\"]\n";

static const uint64_t T0 = 1700000000ull * 1000000000ull;
static const uint64_t MS = 1000000ull;

static void limiter_level(void) {
  portcullis_limiter *limiter = NULL;
  OK(portcullis_limiter_open(S(CONFIG), &limiter));
  bool may_block = true;
  OK(portcullis_limiter_may_block(limiter, &may_block));
  CHECK(!may_block); /* a local store: checks never wait on the network */
  uint32_t api = 99, export_ = 99;
  OK(portcullis_limiter_policy(limiter, S("api"), &api));
  OK(portcullis_limiter_policy(limiter, S("export"), &export_));
  CHECK(api == 0 && export_ == 1);

  /* A burst of 3, then one every 100 ms. */
  portcullis_decision d;
  for (int i = 0; i < 3; i++) {
    OK(portcullis_limiter_check_at(limiter, api, S("alice"), 1, T0, &d));
    CHECK(d.allowed);
    CHECK(d.limit == 3);
    CHECK(d.remaining == (uint32_t)(2 - i));
  }
  OK(portcullis_limiter_check_at(limiter, api, S("alice"), 1, T0, &d));
  CHECK(!d.allowed);
  CHECK(d.retry_after_ns == 100 * MS);
  CHECK(d.retry_after_secs == 1);
  OK(portcullis_limiter_check_at(limiter, api, S("bob"), 1, T0, &d));
  CHECK(d.allowed);
  OK(portcullis_limiter_peek_at(limiter, api, S("alice"), 1, T0 + 100 * MS, &d));
  CHECK(d.allowed);
  OK(portcullis_limiter_check_at(limiter, api, S("alice"), 1, T0 + 100 * MS, &d));
  CHECK(d.allowed);
  CHECK(d.remaining == 0);

  /* Headers of a denial. */
  OK(portcullis_limiter_check_at(limiter, api, S("alice"), 1, T0 + 100 * MS, &d));
  CHECK(!d.allowed);
  portcullis_headers *headers = NULL;
  OK(portcullis_limiter_headers(limiter, PORTCULLIS_HEADER_STYLE_BOTH, &d, 1, &headers));
  size_t count = 0;
  OK(portcullis_headers_count(headers, &count));
  int saw_retry = 0, saw_policy = 0;
  for (size_t i = 0; i < count; i++) {
    portcullis_str n, v;
    OK(portcullis_headers_get(headers, i, &n, &v));
    if (str_is(n, "Retry-After")) saw_retry = str_is(v, "1");
    if (str_is(n, "RateLimit-Policy")) saw_policy = str_is(v, "\"api\";q=10;w=1");
  }
  CHECK(saw_retry);
  CHECK(saw_policy);
  portcullis_headers_free(headers);

  /* Refund gives a unit back; penalize takes one whatever; reset forgets. */
  OK(portcullis_limiter_refund_at(limiter, api, S("alice"), 1, T0 + 100 * MS, &d));
  CHECK(d.allowed);
  OK(portcullis_limiter_penalize_at(limiter, api, S("alice"), 2, T0 + 100 * MS, &d));
  CHECK(!d.allowed);
  bool had = false;
  OK(portcullis_limiter_reset(limiter, api, S("alice"), &had));
  CHECK(had);
  OK(portcullis_limiter_check_at(limiter, api, S("alice"), 1, T0 + 100 * MS, &d));
  CHECK(d.allowed && d.remaining == 2);

  /* Keys are bytes: an embedded NUL is part of the key. */
  OK(portcullis_limiter_check_at(limiter, api, (const uint8_t *)"k\0a", 3, 3, T0, &d));
  CHECK(d.allowed && d.remaining == 0);
  OK(portcullis_limiter_check_at(limiter, api, (const uint8_t *)"k\0b", 3, 1, T0, &d));
  CHECK(d.allowed && d.remaining == 2);

  /* Concurrency: two leases, the third waits for a release. */
  portcullis_lease *a = NULL, *b = NULL, *c = NULL;
  OK(portcullis_limiter_acquire_at(limiter, export_, S("alice"), 1, T0, &d, &a));
  CHECK(d.allowed && a != NULL);
  OK(portcullis_limiter_acquire_at(limiter, export_, S("alice"), 1, T0, &d, &b));
  CHECK(d.allowed && b != NULL);
  OK(portcullis_limiter_acquire_at(limiter, export_, S("alice"), 1, T0, &d, &c));
  CHECK(!d.allowed && c == NULL);
  OK(portcullis_limiter_release_at(limiter, a, T0 + MS));
  OK(portcullis_limiter_acquire_at(limiter, export_, S("alice"), 1, T0 + MS, &d, &c));
  CHECK(d.allowed && c != NULL);
  OK(portcullis_limiter_release(limiter, b));
  portcullis_lease_free(c); /* abandoned: expires after the lease timeout */
  portcullis_lease_free(NULL);

  /* Stats. */
  char json[2048];
  size_t len = 0;
  OK(portcullis_limiter_stats_json(limiter, (uint8_t *)json, sizeof json - 1, &len));
  json[len] = '\0';
  CHECK(strstr(json, "\"name\":\"api\"") != NULL);
  /* Two denials by check; peek, penalize and refund are not requests. */
  CHECK(strstr(json, "\"denied\":2") != NULL);

  OK(portcullis_limiter_close(limiter));
  EXPECT(portcullis_limiter_check(limiter, api, S("alice"), 1, &d), PORTCULLIS_RESULT_CLOSED);
  portcullis_limiter_free(limiter);
}

static void cors_level(void) {
  portcullis_cors *cors = NULL;
  OK(portcullis_cors_open(S(CONFIG), &cors));
  portcullis_cors_request r;
  memset(&r, 0, sizeof r);
  r.method = STR("OPTIONS");
  r.origin = STR("https://app.example.com");
  r.request_method = STR("PUT");
  portcullis_cors_decision *d = NULL;
  OK(portcullis_cors_decide(cors, &r, &d));
  portcullis_cors_info info;
  OK(portcullis_cors_decision_get_info(d, &info));
  CHECK(info.kind == PORTCULLIS_CORS_KIND_PREFLIGHT);
  CHECK(info.allowed && info.status == 204);
  size_t count = 0;
  OK(portcullis_cors_decision_header_count(d, &count));
  int saw_methods = 0;
  for (size_t i = 0; i < count; i++) {
    portcullis_str n, v;
    OK(portcullis_cors_decision_header(d, i, &n, &v));
    if (name_is(n, "Access-Control-Allow-Methods")) saw_methods = str_is(v, "PUT");
  }
  CHECK(saw_methods);
  portcullis_cors_decision_free(d);

  /* The apex and look-alikes are refused, with a reason. */
  r.origin = STR("https://evil-example.com");
  OK(portcullis_cors_decide(cors, &r, &d));
  OK(portcullis_cors_decision_get_info(d, &info));
  CHECK(!info.allowed && info.status == 403);
  portcullis_str reason;
  OK(portcullis_cors_decision_reason(d, &reason));
  CHECK(reason.len > 0 && memmem(reason.ptr, reason.len, "evil-example.com", 16) != NULL);
  OK(portcullis_cors_decision_header_count(d, &count));
  CHECK(count == 1); /* only Vary */
  portcullis_cors_decision_free(d);

  /* No Origin: not CORS. */
  memset(&r, 0, sizeof r);
  r.method = STR("GET");
  OK(portcullis_cors_decide(cors, &r, &d));
  OK(portcullis_cors_decision_get_info(d, &info));
  CHECK(info.kind == PORTCULLIS_CORS_KIND_NOT_CORS && info.allowed && info.status == 0);
  portcullis_cors_decision_free(d);
  portcullis_cors_free(cors);
}

int main(void) {
  limiter_level();
  cors_level();
  return finish("limiter");
}
