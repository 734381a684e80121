// The header from C++: a small RAII wrapper of the kind a C++ server writes, and its use.
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "portcullis.h"

namespace {

std::string last_error() {
  std::string message(256, '\0');
  size_t len = 0;
  if (portcullis_last_error(reinterpret_cast<uint8_t *>(message.data()), message.size(), &len) ==
      PORTCULLIS_RESULT_INSUFFICIENT_SIZE) {
    message.resize(len);
    portcullis_last_error(reinterpret_cast<uint8_t *>(message.data()), message.size(), &len);
  }
  message.resize(len);
  return message;
}

void ok(portcullis_result r) {
  if (r != PORTCULLIS_RESULT_OK) {
    throw std::runtime_error(std::string(portcullis_result_name(r)) + ": " + last_error());
  }
}

const uint8_t *bytes(std::string_view s) { return reinterpret_cast<const uint8_t *>(s.data()); }

struct LimiterFree {
  void operator()(portcullis_limiter *l) const { portcullis_limiter_free(l); }
};

class Limiter {
 public:
  explicit Limiter(std::string_view config) {
    portcullis_limiter *raw = nullptr;
    ok(portcullis_limiter_open(bytes(config), config.size(), &raw));
    handle_.reset(raw);
  }
  uint32_t policy(std::string_view name) const {
    uint32_t id = 0;
    ok(portcullis_limiter_policy(handle_.get(), bytes(name), name.size(), &id));
    return id;
  }
  portcullis_decision check_at(uint32_t policy, std::string_view key, uint64_t now) const {
    portcullis_decision d{};
    ok(portcullis_limiter_check_at(handle_.get(), policy, bytes(key), key.size(), 1, now, &d));
    return d;
  }

 private:
  std::unique_ptr<portcullis_limiter, LimiterFree> handle_;
};

}  // namespace

int main() {
  int failures = 0;
  const uint64_t t0 = 1700000000ull * 1000000000ull;
  try {
    Limiter limiter("[[policy]]\nname = \"login\"\nalgorithm = \"fixed_window\"\n"
                    "limit = \"5/15m\"\nblock = \"15m\"\n");
    uint32_t login = limiter.policy("login");
    for (int i = 0; i < 5; i++) {
      if (!limiter.check_at(login, "203.0.113.9", t0).allowed) failures++;
    }
    portcullis_decision sixth = limiter.check_at(login, "203.0.113.9", t0);
    if (sixth.allowed || sixth.retry_after_secs != 900) failures++;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "unexpected: %s\n", e.what());
    failures++;
  }
  try {
    Limiter bad("[[policy]]\nname = \"zero\"\nlimit = \"0/s\"\n");
    failures++;  // must have thrown
  } catch (const std::runtime_error &e) {
    if (std::strstr(e.what(), "PORTCULLIS_RESULT_INVALID_CONFIG") == nullptr ||
        std::strstr(e.what(), "3:9: policy") == nullptr) {
      std::fprintf(stderr, "unexpected message: %s\n", e.what());
      failures++;
    }
  }
  if (failures != 0) {
    std::fprintf(stderr, "wrapper: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("wrapper (C++): ok\n");
  return 0;
}
