/* Small assertion helpers shared by the C tests of the portcullis ABI. */
#ifndef PORTCULLIS_TEST_CHECK_H
#define PORTCULLIS_TEST_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strncasecmp */
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"

/* A (pointer, length) view of a C string literal or buffer. */
#define S(text) ((const uint8_t *)(text)), strlen(text)
#define STR(text) ((portcullis_str){(const uint8_t *)(text), strlen(text)})
#define NONE ((portcullis_str){NULL, 0})

static int failures = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
      failures++;                                                                    \
    }                                                                                \
  } while (0)

/* The last error message of this thread, into a static buffer. */
static inline const char *last_error(void) {
  static char buf[4096];
  size_t len = 0;
  if (portcullis_last_error((uint8_t *)buf, sizeof buf - 1, &len) != PORTCULLIS_RESULT_OK) {
    return "(message too long)";
  }
  buf[len] = '\0';
  return buf;
}

#define EXPECT(call, code)                                                           \
  do {                                                                               \
    portcullis_result got_ = (call);                                                 \
    if (got_ != (code)) {                                                            \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",       \
              __FILE__, __LINE__, #call, portcullis_result_name(got_), #code,        \
              last_error());                                                         \
      failures++;                                                                    \
    }                                                                                \
  } while (0)

#define OK(call) EXPECT(call, PORTCULLIS_RESULT_OK)

/* Whether the last error message contains `needle`. */
static inline int error_mentions(const char *needle) {
  const char *message = last_error();
  if (strstr(message, needle) == NULL) {
    fprintf(stderr, "last error %s does not mention %s\n", message, needle);
    return 0;
  }
  return 1;
}

/* Compares a borrowed portcullis_str with a C string. */
static inline int str_is(portcullis_str s, const char *expected) {
  return s.len == strlen(expected) && memcmp(s.ptr, expected, s.len) == 0;
}

static inline int finish(const char *name) {
  if (failures > 0) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

/* Compares a header name case-insensitively with a C string. */
static inline int name_is(portcullis_str s, const char *expected) {
  return s.len == strlen(expected) && strncasecmp((const char *)s.ptr, expected, s.len) == 0;
}

#endif
