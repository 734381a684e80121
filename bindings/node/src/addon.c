/*
 * The Node-API addon of portcullis: a thin layer over include/portcullis.h.
 *
 * - Per-environment state lives in instance data (NAPI_MODULE_INIT, no statics that hold
 *   JavaScript values), so the addon loads in any number of worker threads.
 * - Every native handle is a plain object carrying a napi_wrap'ed `handle_t` and a type tag;
 *   the wrap's finalizer only frees, `close` (explicit) closes and frees at once. Calls take a
 *   token instead (`token`): a small integer naming a slot of a per-environment table, with
 *   the slot's generation, checked by one napi_get_value_uint32 where a type-tag check and an
 *   unwrap cost several times the library's own check. A call given anything else (another
 *   kind, a stale token, not a number) throws a TypeError; it never reads the wrong memory.
 * - The synchronous fast path returns no object: numbers go into one Float64Array shared with
 *   JavaScript (`buffer`), strings into one string plus their lengths (see make_segments), and
 *   lib/native.js builds the plain objects, which V8 does far cheaper than Node-API calls.
 * - Calls that may wait for the disk (policies with `durability = "immediate"`) also exist as
 *   napi_async_work on the libuv pool, resolving a Promise; the handle stays alive, and a
 *   `close` waits for them (see handle_t).
 * - Every portcullis_result and every napi_status is checked. A failed library call throws the
 *   error made by lib/errors.js's factory (an Error subclass with `code` the result's name and
 *   the library's message); a failed Node-API call throws its own message, unless an exception
 *   is already pending.
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"

/* ---------------------------------------------------------------------------------------- */
/* Instance data                                                                             */

/* The shared Float64Array: numbers of the last decision, outcome or CORS decision, then the
 * UTF-16 lengths of the segments of the string returned with them. */
#define BUF_LEN 512
#define BUF_SEG 16 /* the first slot of the segment lengths */
#define MAX_SEGS (BUF_LEN - BUF_SEG)

struct handle;

/* A token's slot: a handle, with a generation so that a token of a freed handle never reaches
 * the handle that reuses its slot. */
typedef struct {
  struct handle *h;
  uint32_t next_free; /* when free: the next free slot + 1, 0 at the end */
  uint32_t gen;       /* GEN_BITS bits */
} slot_t;

/* A token is a slot index (SLOT_BITS) and the slot's generation (GEN_BITS) in 31 bits: a small
 * integer to V8, read by one call. */
#define SLOT_BITS 20
#define SLOT_MAX (1u << SLOT_BITS)
#define GEN_BITS 11

typedef struct {
  napi_ref buffer_ref;  /* the ArrayBuffer behind `buffer` */
  double *buf;          /* its data: BUF_LEN doubles, off the V8 heap, never moved */
  napi_ref make_error;  /* (code, name, message) => Error, from lib/errors.js */
  napi_ref make_decision; /* () => Decision, reading buf */
  napi_ref make_outcome;  /* (raw) => Outcome, reading buf */
  portcullis_outcome *scratch; /* decided into again and again by gateDecide */
  slot_t *slots;
  uint32_t nslots, capslots;
  uint32_t free_head; /* the first free slot + 1, 0 when none */
  uint32_t live;      /* handles not yet freed: they use `slots` */
  bool finalized;     /* the environment is gone; freed with the last handle */
} inst_t;

static void inst_free(inst_t *inst) {
  portcullis_outcome_free(inst->scratch);
  free(inst->slots);
  free(inst);
}

static void inst_finalize(napi_env env, void *data, void *hint) {
  inst_t *inst = data;
  (void)hint;
  if (inst == NULL) return;
  if (inst->buffer_ref) napi_delete_reference(env, inst->buffer_ref);
  if (inst->make_error) napi_delete_reference(env, inst->make_error);
  if (inst->make_decision) napi_delete_reference(env, inst->make_decision);
  if (inst->make_outcome) napi_delete_reference(env, inst->make_outcome);
  inst->buffer_ref = inst->make_error = inst->make_decision = inst->make_outcome = NULL;
  inst->finalized = true;
  if (inst->live == 0) inst_free(inst); /* else the last handle's free does it */
}

static inst_t *get_inst(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

/* Throws for a failed Node-API call, unless an exception is already pending. */
static void throw_napi(napi_env env) {
  const napi_extended_error_info *info = NULL;
  const char *msg = "a Node-API call failed";
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL &&
      info->error_message != NULL) {
    msg = info->error_message;
  }
  char copy[256];
  snprintf(copy, sizeof copy, "%s", msg); /* the next call may overwrite it */
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", copy);
}

#define NAPI(call)                                                                           \
  do {                                                                                       \
    if ((call) != napi_ok) {                                                                 \
      throw_napi(env);                                                                       \
      return NULL;                                                                           \
    }                                                                                        \
  } while (0)

#define NAPI_BOOL(call)                                                                      \
  do {                                                                                       \
    if ((call) != napi_ok) {                                                                 \
      throw_napi(env);                                                                       \
      return false;                                                                          \
    }                                                                                        \
  } while (0)

static void throw_type(napi_env env, const char *msg) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

static void throw_range(napi_env env, const char *msg) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
}

/* The error object for a library result, made by the JavaScript factory when it is
 * registered (else a plain Error with `code`). NULL (an exception pending) when even that
 * failed. */
static napi_value make_error(napi_env env, uint32_t code, const char *msg, size_t msg_len) {
  const char *name = portcullis_result_name(code);
  if (name == NULL) name = "PORTCULLIS_RESULT_UNKNOWN";
  if (msg == NULL || msg_len == 0) {
    msg = name;
    msg_len = strlen(name);
  }
  inst_t *inst = get_inst(env);
  napi_value argv[3], fn, recv, err = NULL;
  if (napi_create_uint32(env, code, &argv[0]) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &argv[1]) != napi_ok ||
      napi_create_string_utf8(env, msg, msg_len, &argv[2]) != napi_ok) {
    return NULL;
  }
  if (inst != NULL && inst->make_error != NULL &&
      napi_get_reference_value(env, inst->make_error, &fn) == napi_ok && fn != NULL &&
      napi_get_undefined(env, &recv) == napi_ok &&
      napi_call_function(env, recv, fn, 3, argv, &err) == napi_ok) {
    return err;
  }
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
  }
  if (napi_create_error(env, argv[1], argv[2], &err) != napi_ok) return NULL;
  return err;
}

static void throw_error_value(napi_env env, napi_value err) {
  if (err != NULL) {
    napi_throw(env, err);
  } else {
    throw_napi(env);
  }
}

/* This thread's message for the last failed call, into a malloc'ed buffer (*out_len bytes).
 * NULL when there is none or no memory. */
static char *last_error_copy(size_t *out_len) {
  char stack[1024];
  size_t len = 0;
  *out_len = 0;
  portcullis_result rc = portcullis_last_error((uint8_t *)stack, sizeof stack, &len);
  char *copy = NULL;
  if (rc == PORTCULLIS_RESULT_OK) {
    copy = malloc(len + 1);
    if (copy == NULL) return NULL;
    memcpy(copy, stack, len);
  } else if (rc == PORTCULLIS_RESULT_INSUFFICIENT_SIZE) {
    copy = malloc(len + 1);
    if (copy == NULL) return NULL;
    size_t len2 = 0;
    if (portcullis_last_error((uint8_t *)copy, len + 1, &len2) != PORTCULLIS_RESULT_OK) {
      free(copy);
      return NULL;
    }
    len = len2;
  } else {
    return NULL;
  }
  copy[len] = '\0';
  *out_len = len;
  return copy;
}

/* Throws the error of a failed library call made on this thread just before. */
static void throw_result(napi_env env, portcullis_result rc) {
  size_t len = 0;
  char *msg = last_error_copy(&len);
  napi_value err = make_error(env, rc, msg, len);
  free(msg);
  throw_error_value(env, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Handles                                                                                   */

enum { K_GATE = 0, K_LIMITER = 1, K_CORS = 2, K_OUTCOME = 3, K_LEASE = 4, K_COUNT };

static const char *const KIND_NAMES[K_COUNT] = {"gate", "limiter", "CORS policy",
                                                "gate lease", "lease"};

static const napi_type_tag TAGS[K_COUNT] = {
    {0x70e3c1a94b1f4d2eULL, 0x9d2b6a41c0f35e71ULL},
    {0x70e3c1a94b1f4d2eULL, 0x9d2b6a41c0f35e72ULL},
    {0x70e3c1a94b1f4d2eULL, 0x9d2b6a41c0f35e73ULL},
    {0x70e3c1a94b1f4d2eULL, 0x9d2b6a41c0f35e74ULL},
    {0x70e3c1a94b1f4d2eULL, 0x9d2b6a41c0f35e75ULL},
};

/*
 * A gate, limiter or CORS policy. Only the JavaScript thread of its environment touches it.
 *
 * `ptr` is freed by `close` (explicitly) or by the wrap's finalizer (the object was
 * collected), but never while async work uses it (`inflight`): then the last completion frees
 * it. The struct itself outlives `ptr` while limiter leases point to it (`leases`), and is
 * freed when the object is gone, no work is in flight and no lease is held.
 */
typedef struct handle {
  int kind;
  void *ptr;
  bool closed;    /* close() was called: calls throw PORTCULLIS_RESULT_CLOSED */
  bool finalized; /* the JavaScript object was collected */
  uint32_t inflight;
  uint32_t leases;
  inst_t *inst;
  uint32_t *slots; /* the slots of its tokens */
  uint32_t nslots, capslots;
} handle_t;

static void free_native(int kind, void *ptr) {
  switch (kind) {
    case K_GATE: portcullis_gate_free(ptr); break;
    case K_LIMITER: portcullis_limiter_free(ptr); break;
    case K_CORS: portcullis_cors_free(ptr); break;
    default: break;
  }
}

/* Frees what may be freed now. */
static void handle_settle(handle_t *h) {
  if (h->inflight != 0) return;
  if ((h->closed || h->finalized) && h->ptr != NULL) {
    void *ptr = h->ptr;
    h->ptr = NULL;
    free_native(h->kind, ptr);
  }
  if (!h->finalized || h->leases != 0) return;
  inst_t *inst = h->inst;
  for (uint32_t i = 0; i < h->nslots; i++) {
    slot_t *s = &inst->slots[h->slots[i]];
    s->h = NULL;
    s->gen = (s->gen + 1) & ((1u << GEN_BITS) - 1);
    s->next_free = inst->free_head;
    inst->free_head = h->slots[i] + 1;
  }
  free(h->slots);
  free(h);
  inst->live--;
  if (inst->finalized && inst->live == 0) inst_free(inst);
}

/* A new token for h: slot index | generation << SLOT_BITS. -1 and an exception pending when
 * there is no room. */
static int64_t token_new(napi_env env, handle_t *h) {
  inst_t *inst = h->inst;
  if (h->nslots == h->capslots) {
    uint32_t cap = h->capslots ? 2 * h->capslots : 4;
    uint32_t *grown = realloc(h->slots, cap * sizeof *grown);
    if (grown == NULL) {
      napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
      return -1;
    }
    h->slots = grown;
    h->capslots = cap;
  }
  uint32_t idx;
  if (inst->free_head != 0) {
    idx = inst->free_head - 1;
    inst->free_head = inst->slots[idx].next_free;
  } else {
    if (inst->nslots == SLOT_MAX) {
      napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "too many handles open at once");
      return -1;
    }
    if (inst->nslots == inst->capslots) {
      uint32_t cap = inst->capslots ? 2 * inst->capslots : 64;
      slot_t *grown = realloc(inst->slots, cap * sizeof *grown);
      if (grown == NULL) {
        napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
        return -1;
      }
      inst->slots = grown;
      inst->capslots = cap;
    }
    idx = inst->nslots++;
    inst->slots[idx].gen = 0;
  }
  slot_t *s = &inst->slots[idx];
  s->h = h;
  s->next_free = 0;
  h->slots[h->nslots++] = idx;
  return (int64_t)((uint32_t)s->gen << SLOT_BITS | idx);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  handle_t *h = data;
  (void)env;
  (void)hint;
  if (h == NULL) return;
  h->finalized = true;
  handle_settle(h);
}

/* A new handle object wrapping `ptr` (freed here when wrapping fails). */
static napi_value wrap_handle(napi_env env, int kind, void *ptr) {
  napi_value obj;
  inst_t *inst = get_inst(env);
  handle_t *h = inst == NULL ? NULL : calloc(1, sizeof *h);
  if (h == NULL) {
    free_native(kind, ptr);
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  h->kind = kind;
  h->ptr = ptr;
  h->inst = inst;
  inst->live++;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, h, handle_finalize, NULL, NULL) != napi_ok) {
    free_native(kind, ptr);
    free(h);
    inst->live--;
    throw_napi(env);
    return NULL;
  }
  /* From here the wrap owns h: a failure leaves it to the finalizer. */
  NAPI(napi_type_tag_object(env, obj, &TAGS[kind]));
  return obj;
}

/* The pointer an object wraps if it carries `kind`'s tag; throws a TypeError otherwise. */
static void *unwrap_kind(napi_env env, napi_value v, int kind) {
  bool ok = false;
  napi_status st = napi_check_object_type_tag(env, v, &TAGS[kind], &ok);
  if (st == napi_object_expected || st == napi_pending_exception || (st == napi_ok && !ok)) {
    /* null and undefined fail their conversion to an object: replace that exception. */
    bool pending = false;
    napi_value ignored;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_get_and_clear_last_exception(env, &ignored);
    }
    char msg[96];
    snprintf(msg, sizeof msg, "expected a portcullis %s handle", KIND_NAMES[kind]);
    throw_type(env, msg);
    return NULL;
  }
  if (st != napi_ok) {
    throw_napi(env);
    return NULL;
  }
  void *data = NULL;
  if (napi_unwrap(env, v, &data) != napi_ok || data == NULL) {
    throw_napi(env);
    return NULL;
  }
  return data;
}

static void throw_closed(napi_env env, int kind) {
  char msg[64];
  int n = snprintf(msg, sizeof msg, "the %s is closed", KIND_NAMES[kind]);
  throw_error_value(env, make_error(env, PORTCULLIS_RESULT_CLOSED, msg, (size_t)n));
}

static handle_t *token_fail(napi_env env, int kind);

/* The handle of a token of `kind`, or NULL with a TypeError. */
static handle_t *token_handle(napi_env env, napi_value v, int kind) {
  uint32_t t = 0;
  inst_t *inst = get_inst(env);
  if (inst != NULL && napi_get_value_uint32(env, v, &t) == napi_ok) {
    uint32_t idx = t & (SLOT_MAX - 1);
    if (idx < inst->nslots) {
      slot_t *s = &inst->slots[idx];
      if (s->h != NULL && s->gen == t >> SLOT_BITS && s->h->kind == kind) return s->h;
    }
  }
  return token_fail(env, kind);
}

static handle_t *token_fail(napi_env env, int kind) {
  char msg[96];
  snprintf(msg, sizeof msg, "expected a token of a live portcullis %s", KIND_NAMES[kind]);
  throw_type(env, msg);
  return NULL;
}

/* The open handle of a token of `kind`, or NULL with an exception pending. */
static handle_t *open_handle(napi_env env, napi_value v, int kind) {
  handle_t *h = token_handle(env, v, kind);
  if (h == NULL) return NULL;
  if (h->closed || h->ptr == NULL) {
    throw_closed(env, kind);
    return NULL;
  }
  return h;
}

/* ---------------------------------------------------------------------------------------- */
/* Arguments                                                                                 */

/* Room for the bytes of a call's text arguments: a stack buffer, then malloc'ed blocks. */
typedef struct {
  char *base;
  size_t cap;
  size_t used;
  char *heap[16];
  int nheap;
} arena_t;

static void arena_init(arena_t *a, char *base, size_t cap) {
  a->base = base;
  a->cap = cap;
  a->used = 0;
  a->nheap = 0;
}

static void arena_free(arena_t *a) {
  for (int i = 0; i < a->nheap; i++) free(a->heap[i]);
  a->nheap = 0;
}

static char *arena_heap(napi_env env, arena_t *a, size_t n) {
  if (a->nheap == (int)(sizeof a->heap / sizeof a->heap[0])) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "too many long arguments");
    return NULL;
  }
  char *p = malloc(n ? n : 1);
  if (p == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  a->heap[a->nheap++] = p;
  return p;
}

static const uint8_t EMPTY[1] = {0};

/*
 * Reads a text argument: a string (encoded as UTF-8; lone surrogates become U+FFFD) or a
 * Uint8Array / Buffer (its bytes as they are, borrowed: valid during this call only).
 * `optional`: undefined and null give an absent value (ptr NULL).
 */
/* UTF-16 to UTF-8, a lone surrogate becoming U+FFFD (as V8's own conversion does). `out`
 * has room for 3 bytes per unit. Returns the length written. */
static size_t utf16_to_utf8(const uint16_t *s, size_t n, uint8_t *out) {
  uint8_t *o = out;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = s[i];
    if (c < 0x80) {
      *o++ = (uint8_t)c;
    } else if (c < 0x800) {
      *o++ = (uint8_t)(0xC0 | (c >> 6));
      *o++ = (uint8_t)(0x80 | (c & 0x3F));
    } else if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 &&
               s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      i++;
      *o++ = (uint8_t)(0xF0 | (c >> 18));
      *o++ = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
      *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
      *o++ = (uint8_t)(0x80 | (c & 0x3F));
    } else {
      if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
      *o++ = (uint8_t)(0xE0 | (c >> 12));
      *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
      *o++ = (uint8_t)(0x80 | (c & 0x3F));
    }
  }
  return (size_t)(o - out);
}

#define SHORT_UNITS 128

static bool arg_bytes(napi_env env, napi_value v, arena_t *a, portcullis_str *out,
                      const char *what, bool optional) {
  napi_valuetype t = napi_string;
  size_t n = 0;
  out->ptr = NULL;
  out->len = 0;
  /* Strings first, one call when it is one: a short string's UTF-16 units are copied and
   * encoded here, which costs far less than V8's own UTF-8 conversion. */
  uint16_t units[SHORT_UNITS];
  napi_status st = napi_get_value_string_utf16(env, v, units, SHORT_UNITS, &n);
  if (st == napi_ok) {
    if (n + 1 < SHORT_UNITS && a->cap - a->used >= 3 * n) {
      uint8_t *dst = (uint8_t *)a->base + a->used;
      size_t len = utf16_to_utf8(units, n, dst);
      out->ptr = dst;
      out->len = len;
      a->used += len;
      return true;
    }
  } else if (st == napi_string_expected) {
    NAPI_BOOL(napi_typeof(env, v, &t));
  } else {
    throw_napi(env);
    return false;
  }
  if (t == napi_string) {
    NAPI_BOOL(napi_get_value_string_utf8(env, v, NULL, 0, &n));
    char *heap = arena_heap(env, a, n + 1);
    if (heap == NULL) return false;
    size_t n2 = 0;
    NAPI_BOOL(napi_get_value_string_utf8(env, v, heap, n + 1, &n2));
    out->ptr = (const uint8_t *)heap;
    out->len = n2;
    return true;
  }
  if (t == napi_object) {
    bool is_ta = false;
    NAPI_BOOL(napi_is_typedarray(env, v, &is_ta));
    if (is_ta) {
      napi_typedarray_type type;
      size_t length = 0, offset = 0;
      void *data = NULL;
      napi_value ab;
      NAPI_BOOL(napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset));
      if (type == napi_uint8_array) {
        out->ptr = length ? (const uint8_t *)data : EMPTY;
        out->len = length;
        return true;
      }
    }
  } else if (optional && (t == napi_undefined || t == napi_null)) {
    return true;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "%s must be a string or a Uint8Array%s", what,
           optional ? " (or undefined)" : "");
  throw_type(env, msg);
  return false;
}

/* An integer argument in 0..max. */
static bool arg_uint(napi_env env, napi_value v, double max, const char *what, double *out) {
  double d = 0;
  napi_status st = napi_get_value_double(env, v, &d);
  if (st == napi_number_expected) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    throw_type(env, msg);
    return false;
  }
  NAPI_BOOL(st);
  if (!(d >= 0 && d <= max) || d != (double)(uint64_t)d) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer in 0..%.0f", what, max);
    throw_range(env, msg);
    return false;
  }
  *out = d;
  return true;
}

static bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (!arg_uint(env, v, 4294967295.0, what, &d)) return false;
  *out = (uint32_t)d;
  return true;
}

/* A number as uint32 the way JavaScript's `>>> 0` takes it (the JavaScript side checked the
 * range): one call. */
static bool arg_u32_fast(napi_env env, napi_value v, const char *what, uint32_t *out) {
  napi_status st = napi_get_value_uint32(env, v, out);
  if (st == napi_ok) return true;
  if (st == napi_number_expected) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    throw_type(env, msg);
  } else {
    throw_napi(env);
  }
  return false;
}

static bool arg_bool(napi_env env, napi_value v, const char *what, bool *out) {
  napi_valuetype t;
  NAPI_BOOL(napi_typeof(env, v, &t));
  if (t == napi_undefined || t == napi_null) {
    *out = false;
    return true;
  }
  if (t != napi_boolean) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a boolean", what);
    throw_type(env, msg);
    return false;
  }
  NAPI_BOOL(napi_get_value_bool(env, v, out));
  return true;
}

/* The call's arguments; throws a TypeError when fewer than `want` were given. */
static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                     void **data) {
  size_t argc = want;
  NAPI_BOOL(napi_get_cb_info(env, info, &argc, argv, NULL, data));
  if (argc < want) {
    char msg[64];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", want, argc);
    throw_type(env, msg);
    return false;
  }
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Results: numbers into the shared buffer, strings as one string                            */

typedef struct {
  const uint8_t *ptr;
  size_t len;
} seg_t;

/* The number of UTF-16 code units of valid UTF-8 text. */
static double utf16_len(const uint8_t *p, size_t n) {
  size_t units = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t b = p[i];
    if ((b & 0xC0) != 0x80) units++;
    if (b >= 0xF0) units++; /* a 4-byte sequence is a surrogate pair */
  }
  return (double)units;
}

/*
 * The segments as one string, their UTF-16 lengths in buf[BUF_SEG..]: lib/native.js slices
 * it (one string and a few slices cost far less than a string per segment through
 * Node-API). Past MAX_SEGS segments: an array of strings instead.
 */
static napi_value make_segments(napi_env env, inst_t *inst, const seg_t *segs, size_t n) {
  napi_value result;
  if (n > MAX_SEGS) {
    NAPI(napi_create_array_with_length(env, n, &result));
    for (size_t i = 0; i < n; i++) {
      napi_value s;
      NAPI(napi_create_string_utf8(env, (const char *)segs[i].ptr, segs[i].len, &s));
      NAPI(napi_set_element(env, result, (uint32_t)i, s));
    }
    return result;
  }
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += segs[i].len;
  char stack[4096];
  stack[0] = '\0';
  char *text = total <= sizeof stack ? stack : malloc(total);
  if (text == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (segs[i].len) memcpy(text + at, segs[i].ptr, segs[i].len);
    at += segs[i].len;
  }
  /* Headers are nearly always ASCII: then the lengths are the byte counts, and V8 copies the
   * bytes as they are (Latin-1) instead of decoding UTF-8. */
  uint64_t high = 0;
  size_t i8 = 0;
  for (; i8 + 8 <= total; i8 += 8) {
    uint64_t w;
    memcpy(&w, text + i8, 8);
    high |= w;
  }
  for (; i8 < total; i8++) high |= (uint8_t)text[i8];
  bool ascii = (high & 0x8080808080808080ULL) == 0;
  for (size_t i = 0; i < n; i++) {
    inst->buf[BUF_SEG + i] = ascii ? (double)segs[i].len : utf16_len(segs[i].ptr, segs[i].len);
  }
  napi_status st = ascii ? napi_create_string_latin1(env, text, total, &result)
                         : napi_create_string_utf8(env, text, total, &result);
  if (text != stack) free(text);
  NAPI(st);
  return result;
}

static void write_decision(double *buf, const portcullis_decision *d) {
  buf[0] = d->allowed ? 1 : 0;
  buf[1] = d->limit;
  buf[2] = d->remaining;
  buf[3] = d->policy;
  buf[4] = (double)d->reset_after_ns * 1e-6;
  buf[5] = (double)d->retry_after_ns * 1e-6;
  buf[6] = (double)d->retry_after_secs;
  buf[7] = (double)d->delay_ns * 1e-6;
  buf[8] = (double)d->at_ns * 1e-6;
}

/* A gate lease: an outcome that holds concurrency leases. */
typedef struct {
  portcullis_outcome *outcome;
} outcome_lease_t;

static void outcome_lease_finalize(napi_env env, void *data, void *hint) {
  outcome_lease_t *l = data;
  (void)env;
  (void)hint;
  if (l == NULL) return;
  portcullis_outcome_free(l->outcome); /* gives back what it still holds */
  free(l);
}

/* Done with an outcome: the instance's scratch outcome is kept (its leases given back), any
 * other freed. */
static void outcome_drop(inst_t *inst, portcullis_outcome *o) {
  if (o == inst->scratch) {
    if (portcullis_outcome_release(o) == PORTCULLIS_RESULT_OK) return;
    /* One that could not give its leases back is not decided into again: freeing it does. */
    inst->scratch = NULL;
  }
  portcullis_outcome_free(o);
}

/*
 * Reads an outcome into the shared buffer and the returned value: the segments string (reason,
 * limited-by, then each header's name and value), or [segments, lease] when the outcome holds
 * leases (the lease object then owns it, and the scratch outcome is replaced at the next
 * decision). Drops the outcome otherwise, also on failure.
 */
static napi_value outcome_result(napi_env env, inst_t *inst, portcullis_outcome *o) {
  portcullis_outcome_info info;
  portcullis_result rc = portcullis_outcome_get_info(o, &info);
  napi_value result = NULL;
  seg_t stack_segs[2 + 2 * 32];
  seg_t *segs = stack_segs;
  size_t count = 0;
  if (rc != PORTCULLIS_RESULT_OK) goto fail;
  portcullis_str reason, limited_by;
  if ((rc = portcullis_outcome_reason(o, &reason)) != PORTCULLIS_RESULT_OK) goto fail;
  if ((rc = portcullis_outcome_limited_by(o, &limited_by)) != PORTCULLIS_RESULT_OK) goto fail;
  if ((rc = portcullis_outcome_header_count(o, &count)) != PORTCULLIS_RESULT_OK) goto fail;
  if (count > 32) {
    segs = malloc((2 + 2 * count) * sizeof *segs);
    if (segs == NULL) {
      outcome_drop(inst, o);
      napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
      return NULL;
    }
  }
  segs[0].ptr = reason.ptr;
  segs[0].len = reason.len;
  segs[1].ptr = limited_by.ptr;
  segs[1].len = limited_by.len;
  for (size_t i = 0; i < count; i++) {
    portcullis_str name, value;
    if ((rc = portcullis_outcome_header(o, i, &name, &value)) != PORTCULLIS_RESULT_OK) goto fail;
    segs[2 + 2 * i].ptr = name.ptr;
    segs[2 + 2 * i].len = name.len;
    segs[3 + 2 * i].ptr = value.ptr;
    segs[3 + 2 * i].len = value.len;
  }
  double *buf = inst->buf;
  buf[0] = info.action;
  buf[1] = info.status;
  buf[2] = (double)info.delay_ns / 1e6;
  buf[3] = (double)info.retry_after_secs;
  buf[4] = info.remaining == UINT32_MAX ? -1 : (double)info.remaining;
  buf[5] = info.limit;
  buf[6] = info.leases;
  buf[7] = (double)count;
  napi_value text = make_segments(env, inst, segs, 2 + 2 * count);
  if (segs != stack_segs) free(segs);
  segs = stack_segs;
  if (text == NULL) {
    outcome_drop(inst, o);
    return NULL;
  }
  if (info.leases == 0) {
    outcome_drop(inst, o);
    return text;
  }
  /* Keep the outcome (its leases) in a lease object. */
  outcome_lease_t *l = malloc(sizeof *l);
  if (l == NULL) {
    outcome_drop(inst, o);
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  l->outcome = o;
  if (o == inst->scratch) inst->scratch = NULL;
  napi_value lease, pair;
  if (napi_create_object(env, &lease) != napi_ok ||
      napi_wrap(env, lease, l, outcome_lease_finalize, NULL, NULL) != napi_ok) {
    outcome_drop(inst, o);
    free(l);
    throw_napi(env);
    return NULL;
  }
  NAPI(napi_type_tag_object(env, lease, &TAGS[K_OUTCOME]));
  NAPI(napi_create_array_with_length(env, 2, &pair));
  NAPI(napi_set_element(env, pair, 0, text));
  NAPI(napi_set_element(env, pair, 1, lease));
  return pair;

fail:
  if (segs != stack_segs) free(segs);
  throw_result(env, rc);
  outcome_drop(inst, o);
  return result;
}

/* ---------------------------------------------------------------------------------------- */
/* init, version                                                                             */

/* init(makeError, makeDecision, makeOutcome): the factories of lib/native.js. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    return NULL;
  }
  for (int i = 0; i < 3; i++) {
    napi_valuetype t;
    NAPI(napi_typeof(env, argv[i], &t));
    if (t != napi_function) {
      throw_type(env, "init expects three functions");
      return NULL;
    }
  }
  napi_ref *refs[3] = {&inst->make_error, &inst->make_decision, &inst->make_outcome};
  for (int i = 0; i < 3; i++) {
    if (*refs[i] != NULL) {
      NAPI(napi_delete_reference(env, *refs[i]));
      *refs[i] = NULL;
    }
    NAPI(napi_create_reference(env, argv[i], 1, refs[i]));
  }
  return NULL;
}

static napi_value js_result_name(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  uint32_t code;
  if (!get_args(env, info, 1, argv, NULL) || !arg_u32(env, argv[0], "code", &code)) return NULL;
  NAPI(napi_create_string_utf8(env, portcullis_result_name(code), NAPI_AUTO_LENGTH, &out));
  return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Opening and closing                                                                       */

/* open(kind, text): the data of each function says which library call. */
typedef struct {
  int kind;
  portcullis_result (*fn)(const uint8_t *, size_t, void **);
  const char *what;
} open_spec_t;

static portcullis_result open_gate(const uint8_t *p, size_t n, void **out) {
  return portcullis_gate_open(p, n, (portcullis_gate **)out);
}
static portcullis_result open_gate_file(const uint8_t *p, size_t n, void **out) {
  return portcullis_gate_open_file(p, n, (portcullis_gate **)out);
}
static portcullis_result open_limiter(const uint8_t *p, size_t n, void **out) {
  return portcullis_limiter_open(p, n, (portcullis_limiter **)out);
}
static portcullis_result open_limiter_file(const uint8_t *p, size_t n, void **out) {
  return portcullis_limiter_open_file(p, n, (portcullis_limiter **)out);
}
static portcullis_result open_cors(const uint8_t *p, size_t n, void **out) {
  return portcullis_cors_open(p, n, (portcullis_cors **)out);
}

static const open_spec_t OPEN_SPECS[] = {
    {K_GATE, open_gate, "config"},
    {K_GATE, open_gate_file, "path"},
    {K_LIMITER, open_limiter, "config"},
    {K_LIMITER, open_limiter_file, "path"},
    {K_CORS, open_cors, "config"},
};

static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  const open_spec_t *spec = data;
  char stack[256];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str text;
  if (!arg_bytes(env, argv[0], &a, &text, spec->what, false)) {
    arena_free(&a);
    return NULL;
  }
  void *ptr = NULL;
  portcullis_result rc = spec->fn(text.ptr, text.len, &ptr);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  if (ptr == NULL) {
    throw_error_value(env, make_error(env, PORTCULLIS_RESULT_NULL_PARAMETER,
                                      "the library returned no handle", 30));
    return NULL;
  }
  return wrap_handle(env, spec->kind, ptr);
}

/* close(handle): closes (a final write to the store) and frees; idempotent. With async calls
 * in flight it only marks the handle closed, and the last of them frees it. Throws the
 * close's error, after freeing all the same. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  int kind = (int)(intptr_t)data;
  handle_t *h = token_handle(env, argv[0], kind);
  if (h == NULL || h->closed) return NULL;
  h->closed = true;
  if (h->inflight != 0 || h->ptr == NULL) return NULL;
  void *ptr = h->ptr;
  portcullis_result rc = PORTCULLIS_RESULT_OK;
  if (kind == K_GATE) rc = portcullis_gate_close(ptr);
  if (kind == K_LIMITER) rc = portcullis_limiter_close(ptr);
  napi_value err = NULL;
  if (rc != PORTCULLIS_RESULT_OK && rc != PORTCULLIS_RESULT_CLOSED) {
    size_t len = 0;
    char *msg = last_error_copy(&len);
    err = make_error(env, rc, msg, len);
    free(msg);
  }
  h->ptr = NULL;
  free_native(kind, ptr);
  if (rc != PORTCULLIS_RESULT_OK && rc != PORTCULLIS_RESULT_CLOSED) {
    throw_error_value(env, err);
  }
  return NULL;
}

static napi_value js_is_closed(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  handle_t *h = token_handle(env, argv[0], (int)(intptr_t)data);
  if (h == NULL) return NULL;
  NAPI(napi_get_boolean(env, h->closed || h->ptr == NULL, &out));
  return out;
}

/* token(handle): a token for calls on the handle: a number, which a call checks far cheaper
 * than the object (a type tag and an unwrap cost more than the library's check). The object
 * keeps the handle alive; its tokens stop working when it is collected. */
static napi_value js_token(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  handle_t *h = unwrap_kind(env, argv[0], (int)(intptr_t)data);
  if (h == NULL) return NULL;
  int64_t t = token_new(env, h);
  if (t < 0) return NULL;
  NAPI(napi_create_uint32(env, (uint32_t)t, &out));
  return out;
}

/* A stats call: JSON into a buffer that grows until it fits. */
static napi_value json_result(napi_env env, handle_t *h,
                              portcullis_result (*fn)(const void *, uint8_t *, size_t, size_t *)) {
  size_t cap = 8192, len = 0;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
      napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
      return NULL;
    }
    portcullis_result rc = fn(h->ptr, buf, cap, &len);
    if (rc == PORTCULLIS_RESULT_OK) {
      napi_value out;
      napi_status st = napi_create_string_utf8(env, (const char *)buf, len, &out);
      free(buf);
      NAPI(st);
      return out;
    }
    free(buf);
    if (rc != PORTCULLIS_RESULT_INSUFFICIENT_SIZE) {
      throw_result(env, rc);
      return NULL;
    }
    cap = len + 1024; /* it may grow between the calls */
  }
  throw_error_value(env, make_error(env, PORTCULLIS_RESULT_INSUFFICIENT_SIZE,
                                    "the stats kept growing past the buffer", 38));
  return NULL;
}

static portcullis_result gate_stats(const void *p, uint8_t *b, size_t c, size_t *l) {
  return portcullis_gate_stats_json(p, b, c, l);
}
static portcullis_result limiter_stats(const void *p, uint8_t *b, size_t c, size_t *l) {
  return portcullis_limiter_stats_json(p, b, c, l);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  int kind = (int)(intptr_t)data;
  handle_t *h = open_handle(env, argv[0], kind);
  if (h == NULL) return NULL;
  return json_result(env, h, kind == K_GATE ? gate_stats : limiter_stats);
}

/* ---------------------------------------------------------------------------------------- */
/* Limiter                                                                                   */

enum { OP_CHECK = 0, OP_PEEK = 1, OP_PENALIZE = 2, OP_REFUND = 3 };

typedef portcullis_result (*decide_fn)(const portcullis_limiter *, uint32_t, const uint8_t *,
                                       size_t, uint32_t, portcullis_decision *);

static const decide_fn DECIDE_FNS[] = {portcullis_limiter_check, portcullis_limiter_peek,
                                       portcullis_limiter_penalize, portcullis_limiter_refund};

/* The arguments (token, policy, key[, cost]) of the limiter's deciding calls: the cost is 1
 * when not given. */
static handle_t *decide_args(napi_env env, napi_callback_info info, void **data, arena_t *a,
                             portcullis_str *key, uint32_t *policy, uint32_t *cost) {
  napi_value argv[4];
  size_t argc = 4;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, data) != napi_ok) {
    throw_napi(env);
    return NULL;
  }
  if (argc < 3) {
    throw_type(env, "expected a token, a policy and a key");
    return NULL;
  }
  handle_t *h = open_handle(env, argv[0], K_LIMITER);
  if (h == NULL || !arg_u32_fast(env, argv[1], "policy", policy)) return NULL;
  *cost = 1;
  if (argc >= 4 && !arg_u32_fast(env, argv[3], "cost", cost)) return NULL;
  if (!arg_bytes(env, argv[2], a, key, "key", false)) return NULL;
  return h;
}

/* limiterCheck(token, policy, key[, cost]) and peek/penalize/refund: the decision into buf. */
static napi_value js_limiter_decide(napi_env env, napi_callback_info info) {
  void *data = NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str key;
  uint32_t policy, cost;
  handle_t *h = decide_args(env, info, &data, &a, &key, &policy, &cost);
  if (h == NULL) {
    arena_free(&a);
    return NULL;
  }
  portcullis_decision d;
  portcullis_result rc = DECIDE_FNS[(intptr_t)data](h->ptr, policy, key.ptr, key.len, cost, &d);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    return NULL;
  }
  write_decision(inst->buf, &d);
  return NULL;
}

static napi_value js_limiter_policy(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_LIMITER);
  if (h == NULL) return NULL;
  char stack[256];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str name;
  if (!arg_bytes(env, argv[1], &a, &name, "policy", false)) {
    arena_free(&a);
    return NULL;
  }
  uint32_t id = 0;
  portcullis_result rc = portcullis_limiter_policy(h->ptr, name.ptr, name.len, &id);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  NAPI(napi_create_uint32(env, id, &out));
  return out;
}

/* limiterReset(token, policy, key): whether the key had state. */
static napi_value js_limiter_reset(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  uint32_t policy;
  handle_t *h = open_handle(env, argv[0], K_LIMITER);
  if (h == NULL || !arg_u32(env, argv[1], "policy", &policy)) return NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str key;
  if (!arg_bytes(env, argv[2], &a, &key, "key", false)) {
    arena_free(&a);
    return NULL;
  }
  bool had = false;
  portcullis_result rc = portcullis_limiter_reset(h->ptr, policy, key.ptr, key.len, &had);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  NAPI(napi_get_boolean(env, had, &out));
  return out;
}

/* A limiter lease: given back through the limiter that issued it (`owner`, kept alive). */
typedef struct {
  portcullis_lease *lease;
  handle_t *owner;
} lease_t;

static void lease_drop_owner(lease_t *l) {
  handle_t *owner = l->owner;
  l->owner = NULL;
  if (owner != NULL) {
    owner->leases--;
    handle_settle(owner);
  }
}

static void lease_finalize(napi_env env, void *data, void *hint) {
  lease_t *l = data;
  (void)env;
  (void)hint;
  if (l == NULL) return;
  if (l->lease != NULL) portcullis_lease_free(l->lease); /* abandoned: expires by itself */
  l->lease = NULL;
  lease_drop_owner(l);
  free(l);
}

/* limiterAcquire(token, policy, key[, cost]): the decision into buf; returns a lease object when
 * granted, undefined when denied. */
static napi_value js_limiter_acquire(napi_env env, napi_callback_info info) {
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    return NULL;
  }
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str key;
  uint32_t policy, cost;
  handle_t *h = decide_args(env, info, NULL, &a, &key, &policy, &cost);
  if (h == NULL) {
    arena_free(&a);
    return NULL;
  }
  lease_t *l = calloc(1, sizeof *l);
  if (l == NULL) {
    arena_free(&a);
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, l, lease_finalize, NULL, NULL) != napi_ok) {
    arena_free(&a);
    free(l);
    throw_napi(env);
    return NULL;
  }
  /* The wrap owns l from here. */
  if (napi_type_tag_object(env, obj, &TAGS[K_LEASE]) != napi_ok) {
    arena_free(&a);
    throw_napi(env);
    return NULL;
  }
  portcullis_decision d;
  portcullis_lease *lease = NULL;
  portcullis_result rc =
      portcullis_limiter_acquire(h->ptr, policy, key.ptr, key.len, cost, &d, &lease);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  write_decision(inst->buf, &d);
  if (lease == NULL) return NULL;
  l->lease = lease;
  l->owner = h;
  h->leases++;
  return obj;
}

/* leaseRelease(lease): gives it back (or abandons it when its limiter is closed); true when it
 * was held. */
static napi_value js_lease_release(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  lease_t *l = unwrap_kind(env, argv[0], K_LEASE);
  if (l == NULL) return NULL;
  portcullis_lease *lease = l->lease;
  if (lease == NULL) {
    NAPI(napi_get_boolean(env, false, &out));
    return out;
  }
  l->lease = NULL;
  handle_t *owner = l->owner;
  portcullis_result rc = PORTCULLIS_RESULT_OK;
  if (owner != NULL && owner->ptr != NULL && !owner->closed) {
    rc = portcullis_limiter_release(owner->ptr, lease); /* frees it, also on failure */
  } else {
    portcullis_lease_free(lease);
  }
  napi_value err = NULL;
  if (rc != PORTCULLIS_RESULT_OK) {
    size_t len = 0;
    char *msg = last_error_copy(&len);
    err = make_error(env, rc, msg, len);
    free(msg);
  }
  lease_drop_owner(l);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_error_value(env, err);
    return NULL;
  }
  NAPI(napi_get_boolean(env, true, &out));
  return out;
}

/* leaseAbandon(lease): frees it without giving it back. */
static napi_value js_lease_abandon(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  lease_t *l = unwrap_kind(env, argv[0], K_LEASE);
  if (l == NULL) return NULL;
  bool held = l->lease != NULL;
  if (held) portcullis_lease_free(l->lease);
  l->lease = NULL;
  lease_drop_owner(l);
  NAPI(napi_get_boolean(env, held, &out));
  return out;
}

/* limiterHeaders(token, style, Float64Array of 9 numbers per decision, count): the header
 * segments (name, value, ...). */
static napi_value js_limiter_headers(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_LIMITER);
  if (h == NULL) return NULL;
  uint32_t style, count;
  if (!arg_u32(env, argv[1], "style", &style) || !arg_u32(env, argv[3], "count", &count)) {
    return NULL;
  }
  bool is_ta = false;
  NAPI(napi_is_typedarray(env, argv[2], &is_ta));
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0, offset = 0;
  void *data = NULL;
  napi_value ab;
  if (is_ta) NAPI(napi_get_typedarray_info(env, argv[2], &type, &length, &data, &ab, &offset));
  if (!is_ta || type != napi_float64_array) {
    throw_type(env, "decisions must be a Float64Array");
    return NULL;
  }
  if (count == 0 || (size_t)count * 9 > length) {
    throw_range(env, "count does not match the decisions");
    return NULL;
  }
  portcullis_decision *ds = calloc(count, sizeof *ds);
  if (ds == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  const double *v = data;
  for (uint32_t i = 0; i < count; i++) {
    const double *x = v + 9 * (size_t)i;
    for (int j = 1; j < 9; j++) {
      if (!(x[j] >= 0 && x[j] < 1.8e19)) {
        free(ds);
        throw_range(env, "a decision holds a number out of range");
        return NULL;
      }
    }
    ds[i].allowed = x[0] != 0;
    ds[i].limit = x[1] > 4294967295.0 ? UINT32_MAX : (uint32_t)x[1];
    ds[i].remaining = x[2] > 4294967295.0 ? UINT32_MAX : (uint32_t)x[2];
    ds[i].policy = x[3] > 4294967295.0 ? UINT32_MAX : (uint32_t)x[3];
    ds[i].reset_after_ns = (uint64_t)x[4];
    ds[i].retry_after_ns = (uint64_t)x[5];
    ds[i].retry_after_secs = (uint64_t)x[6];
    ds[i].delay_ns = (uint64_t)x[7];
    ds[i].at_ns = (uint64_t)x[8];
  }
  portcullis_headers *hs = NULL;
  portcullis_result rc = portcullis_limiter_headers(h->ptr, style, ds, count, &hs);
  free(ds);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  size_t n = 0;
  napi_value result = NULL;
  seg_t *segs = NULL;
  if ((rc = portcullis_headers_count(hs, &n)) != PORTCULLIS_RESULT_OK) goto fail;
  segs = malloc((2 * n + 1) * sizeof *segs);
  if (segs == NULL) {
    portcullis_headers_free(hs);
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    portcullis_str name, value;
    if ((rc = portcullis_headers_get(hs, i, &name, &value)) != PORTCULLIS_RESULT_OK) goto fail;
    segs[2 * i].ptr = name.ptr;
    segs[2 * i].len = name.len;
    segs[2 * i + 1].ptr = value.ptr;
    segs[2 * i + 1].len = value.len;
  }
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
  } else {
    inst->buf[7] = (double)n;
    result = make_segments(env, inst, segs, 2 * n);
  }
  free(segs);
  portcullis_headers_free(hs);
  return result;
fail:
  free(segs);
  throw_result(env, rc);
  portcullis_headers_free(hs);
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Gate                                                                                      */

/* The request fields in argument order after the handle: method, path, origin,
 * requestMethod, requestHeaders, ip, principal, tier, forwardedFor, forwarded; then
 * privateNetwork. */
#define REQ_FIELDS 10
static const char *const REQ_NAMES[REQ_FIELDS] = {
    "method", "path",      "origin",    "requestMethod", "requestHeaders",
    "ip",     "principal", "tier",      "forwardedFor",  "forwarded"};

static bool read_request(napi_env env, napi_value *argv, arena_t *a, portcullis_request *req) {
  portcullis_str *fields[REQ_FIELDS] = {&req->method,          &req->path,
                                        &req->origin,          &req->request_method,
                                        &req->request_headers, &req->client_ip,
                                        &req->principal,       &req->tier,
                                        &req->forwarded_for,   &req->forwarded};
  for (int i = 0; i < REQ_FIELDS; i++) {
    if (!arg_bytes(env, argv[i], a, fields[i], REQ_NAMES[i], i >= 2)) return false;
  }
  return arg_bool(env, argv[REQ_FIELDS], "privateNetwork", &req->private_network);
}

/* gateDecide(h, method, path, origin, requestMethod, requestHeaders, ip, principal, tier,
 * forwardedFor, forwarded, privateNetwork): the outcome's numbers into buf; returns its segments, or [segments, lease]. */
static napi_value js_gate_decide(napi_env env, napi_callback_info info) {
  napi_value argv[1 + REQ_FIELDS + 1];
  if (!get_args(env, info, 1 + REQ_FIELDS + 1, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    return NULL;
  }
  char stack[2048];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_request req;
  memset(&req, 0, sizeof req);
  if (!read_request(env, argv + 1, &a, &req)) {
    arena_free(&a);
    return NULL;
  }
  portcullis_result rc = PORTCULLIS_RESULT_OK;
  if (inst->scratch == NULL) rc = portcullis_outcome_new(&inst->scratch);
  if (rc == PORTCULLIS_RESULT_OK) rc = portcullis_gate_decide_into(h->ptr, &req, inst->scratch);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  return outcome_result(env, inst, inst->scratch);
}

/* gateReload(h, config) */
static napi_value js_gate_reload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  char stack[256];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str text;
  if (!arg_bytes(env, argv[1], &a, &text, "config", false)) {
    arena_free(&a);
    return NULL;
  }
  portcullis_result rc = portcullis_gate_reload(h->ptr, text.ptr, text.len);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) throw_result(env, rc);
  return NULL;
}

/* gateReset(h, policy, kind, key): whether the key had state. */
static napi_value js_gate_reset(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  if (!get_args(env, info, 4, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  uint32_t kind;
  if (!arg_u32(env, argv[2], "kind", &kind)) return NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str policy, key;
  if (!arg_bytes(env, argv[1], &a, &policy, "policy", false) ||
      !arg_bytes(env, argv[3], &a, &key, "key", false)) {
    arena_free(&a);
    return NULL;
  }
  bool had = false;
  portcullis_result rc =
      portcullis_gate_reset(h->ptr, policy.ptr, policy.len, kind, key.ptr, key.len, &had);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  NAPI(napi_get_boolean(env, had, &out));
  return out;
}

static portcullis_result gate_metrics_prometheus(const void *p, uint8_t *b, size_t c,
                                                 size_t *l) {
  return portcullis_gate_metrics(p, PORTCULLIS_METRICS_FORMAT_PROMETHEUS, b, c, l);
}
static portcullis_result gate_metrics_openmetrics(const void *p, uint8_t *b, size_t c,
                                                  size_t *l) {
  return portcullis_gate_metrics(p, PORTCULLIS_METRICS_FORMAT_OPEN_METRICS, b, c, l);
}

/* gateMetrics(gate, openmetrics): the metrics text, grown like the stats' JSON. */
static napi_value js_gate_metrics(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  bool openmetrics = false;
  NAPI(napi_get_value_bool(env, argv[1], &openmetrics));
  return json_result(env, h, openmetrics ? gate_metrics_openmetrics : gate_metrics_prometheus);
}

/* gatePublishMetrics(gate): this process's counters onto the shared store's board. */
static napi_value js_gate_publish_metrics(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  portcullis_result rc = portcullis_gate_publish_metrics(h->ptr);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  NAPI(napi_get_undefined(env, &out));
  return out;
}

/* outcomeRelease(lease): gives the outcome's leases back and frees it; true when held. */
static napi_value js_outcome_release(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  outcome_lease_t *l = unwrap_kind(env, argv[0], K_OUTCOME);
  if (l == NULL) return NULL;
  portcullis_outcome *o = l->outcome;
  if (o == NULL) {
    NAPI(napi_get_boolean(env, false, &out));
    return out;
  }
  l->outcome = NULL;
  portcullis_result rc = portcullis_outcome_release(o);
  napi_value err = NULL;
  if (rc != PORTCULLIS_RESULT_OK) {
    size_t len = 0;
    char *msg = last_error_copy(&len);
    err = make_error(env, rc, msg, len);
    free(msg);
  }
  portcullis_outcome_free(o); /* gives back anything still held */
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_error_value(env, err);
    return NULL;
  }
  NAPI(napi_get_boolean(env, true, &out));
  return out;
}

/* ---------------------------------------------------------------------------------------- */
/* CORS                                                                                      */

/* corsDecide(h, method, origin, requestMethod, requestHeaders, privateNetwork): kind, allowed
 * and status into buf; returns the segments (reason, then names and values). */
static napi_value js_cors_decide(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_CORS);
  if (h == NULL) return NULL;
  inst_t *inst = get_inst(env);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    return NULL;
  }
  char stack[1024];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_cors_request req;
  memset(&req, 0, sizeof req);
  if (!arg_bytes(env, argv[1], &a, &req.method, "method", false) ||
      !arg_bytes(env, argv[2], &a, &req.origin, "origin", true) ||
      !arg_bytes(env, argv[3], &a, &req.request_method, "requestMethod", true) ||
      !arg_bytes(env, argv[4], &a, &req.request_headers, "requestHeaders", true) ||
      !arg_bool(env, argv[5], "privateNetwork", &req.private_network)) {
    arena_free(&a);
    return NULL;
  }
  portcullis_cors_decision *d = NULL;
  portcullis_result rc = portcullis_cors_decide(h->ptr, &req, &d);
  arena_free(&a);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  napi_value result = NULL;
  seg_t *segs = NULL;
  portcullis_cors_info ci;
  portcullis_str reason;
  size_t n = 0;
  if ((rc = portcullis_cors_decision_get_info(d, &ci)) != PORTCULLIS_RESULT_OK) goto fail;
  if ((rc = portcullis_cors_decision_reason(d, &reason)) != PORTCULLIS_RESULT_OK) goto fail;
  if ((rc = portcullis_cors_decision_header_count(d, &n)) != PORTCULLIS_RESULT_OK) goto fail;
  segs = malloc((1 + 2 * n) * sizeof *segs);
  if (segs == NULL) {
    portcullis_cors_decision_free(d);
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  segs[0].ptr = reason.ptr;
  segs[0].len = reason.len;
  for (size_t i = 0; i < n; i++) {
    portcullis_str name, value;
    if ((rc = portcullis_cors_decision_header(d, i, &name, &value)) != PORTCULLIS_RESULT_OK) {
      goto fail;
    }
    segs[1 + 2 * i].ptr = name.ptr;
    segs[1 + 2 * i].len = name.len;
    segs[2 + 2 * i].ptr = value.ptr;
    segs[2 + 2 * i].len = value.len;
  }
  inst->buf[0] = ci.kind;
  inst->buf[1] = ci.allowed ? 1 : 0;
  inst->buf[2] = ci.status;
  inst->buf[7] = (double)n;
  result = make_segments(env, inst, segs, 1 + 2 * n);
  free(segs);
  portcullis_cors_decision_free(d);
  return result;
fail:
  free(segs);
  throw_result(env, rc);
  portcullis_cors_decision_free(d);
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Async work: the same calls on the libuv pool                                              */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  handle_t *h;
  int op; /* OP_* for the limiter's decisions, AOP_* for the rest */
  uint32_t policy, cost;
  portcullis_str key;
  portcullis_str policy_name; /* a gate reset's policy */
  uint32_t key_kind;          /* a gate reset's kind of key */
  bool had;                   /* a reset's or release's answer */
  portcullis_outcome *release; /* the outcome whose leases go back */
  portcullis_request req;
  uint8_t *bytes; /* the copies `key` and `req` point into */
  portcullis_result rc;
  portcullis_decision d;
  portcullis_outcome *outcome;
  char *err;
  size_t err_len;
} async_t;

/* The calls other than a limiter's decisions (OP_*) that run on the pool. */
enum { AOP_GATE_DECIDE = -1, AOP_GATE_RESET = -2, AOP_LIMITER_RESET = -3, AOP_OUTCOME_RELEASE = -4 };

/* A call for the pool on handle `h` (NULL: none), zeroed; throws when out of memory. */
static async_t *async_new(napi_env env, handle_t *h) {
  async_t *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  w->h = h;
  return w;
}

static void async_free(async_t *w) {
  free(w->bytes);
  free(w->err);
  if (w->outcome != NULL) portcullis_outcome_free(w->outcome);
  if (w->release != NULL) portcullis_outcome_free(w->release); /* never queued */
  free(w);
}

/* On a pool thread: no JavaScript, only the library. */
static void async_execute(napi_env env, void *data) {
  async_t *w = data;
  (void)env;
  switch (w->op) {
    case AOP_GATE_DECIDE:
      w->rc = portcullis_gate_decide(w->h->ptr, &w->req, &w->outcome);
      break;
    case AOP_GATE_RESET:
      w->rc = portcullis_gate_reset(w->h->ptr, w->policy_name.ptr, w->policy_name.len,
                                    w->key_kind, w->key.ptr, w->key.len, &w->had);
      break;
    case AOP_LIMITER_RESET:
      w->rc = portcullis_limiter_reset(w->h->ptr, w->policy, w->key.ptr, w->key.len, &w->had);
      break;
    case AOP_OUTCOME_RELEASE:
      w->rc = portcullis_outcome_release(w->release);
      /* Freed here too: freeing gives back what a failed release still holds, which may
       * wait on the network again. */
      portcullis_outcome_free(w->release);
      w->release = NULL;
      w->had = true;
      break;
    default:
      w->rc = DECIDE_FNS[w->op](w->h->ptr, w->policy, w->key.ptr, w->key.len, w->cost, &w->d);
  }
  if (w->rc != PORTCULLIS_RESULT_OK) w->err = last_error_copy(&w->err_len);
}

/* The pending exception, cleared, to reject with. */
static napi_value take_exception(napi_env env) {
  napi_value e = NULL;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &e) == napi_ok) {
    return e;
  }
  const napi_extended_error_info *info = NULL;
  napi_value code, msg;
  const char *text = "a Node-API call failed";
  if (napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message) {
    text = info->error_message;
  }
  if (napi_create_string_utf8(env, "PORTCULLIS_NAPI_ERROR", NAPI_AUTO_LENGTH, &code) ==
          napi_ok &&
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) == napi_ok &&
      napi_create_error(env, code, msg, &e) == napi_ok) {
    return e;
  }
  return NULL;
}

static napi_value call_factory(napi_env env, napi_ref ref, size_t argc, napi_value *argv) {
  napi_value fn, recv, out = NULL;
  if (ref == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon was not initialised");
    return NULL;
  }
  NAPI(napi_get_reference_value(env, ref, &fn));
  NAPI(napi_get_undefined(env, &recv));
  NAPI(napi_call_function(env, recv, fn, argc, argv, &out));
  return out;
}

static void async_complete(napi_env env, napi_status status, void *data) {
  async_t *w = data;
  handle_t *h = w->h;
  napi_value value = NULL;
  bool ok = false;
  if (env != NULL) {
    inst_t *inst = get_inst(env);
    if (status == napi_cancelled) {
      value = make_error(env, PORTCULLIS_RESULT_CLOSED, "the call was cancelled", 22);
    } else if (status != napi_ok) {
      value = NULL;
    } else if (w->rc != PORTCULLIS_RESULT_OK) {
      value = make_error(env, w->rc, w->err, w->err_len);
    } else if (inst == NULL) {
      napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "the addon's instance data is missing");
    } else if (w->op == AOP_GATE_DECIDE) {
      portcullis_outcome *o = w->outcome;
      w->outcome = NULL; /* outcome_result owns it now */
      napi_value raw = outcome_result(env, inst, o);
      if (raw != NULL) {
        value = call_factory(env, inst->make_outcome, 1, &raw);
        ok = value != NULL;
      }
    } else if (w->op < 0) {
      ok = napi_get_boolean(env, w->had, &value) == napi_ok;
      if (!ok) value = NULL;
    } else {
      write_decision(inst->buf, &w->d);
      value = call_factory(env, inst->make_decision, 0, NULL);
      ok = value != NULL;
    }
    if (value == NULL) value = take_exception(env);
    if (value == NULL && napi_get_undefined(env, &value) != napi_ok) value = NULL;
    /* Settling consumes the deferred whatever its status; a failure here has no caller to go
     * to, and an exception left pending would reach the process as an uncaught one: both
     * are cleared, the promise then stays pending. */
    napi_status st = napi_generic_failure;
    if (value != NULL) {
      st = ok ? napi_resolve_deferred(env, w->deferred, value)
              : napi_reject_deferred(env, w->deferred, value);
    }
    if (napi_delete_async_work(env, w->work) != napi_ok) st = napi_generic_failure;
    if (st != napi_ok) (void)take_exception(env);
  }
  async_free(w);
  if (h != NULL) {
    h->inflight--;
    handle_settle(h);
  }
}

/* Rejects a promise with the error of the Node-API call that just failed. */
static void reject_now(napi_env env, napi_deferred deferred) {
  napi_value e = take_exception(env);
  if (e == NULL || napi_reject_deferred(env, deferred, e) != napi_ok) (void)take_exception(env);
}

/* Queues `w` and returns its promise (rejected when queueing failed; `w` is freed then). */
static napi_value async_queue(napi_env env, async_t *w, const char *name) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) {
    async_free(w);
    throw_napi(env);
    return NULL;
  }
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, async_execute, async_complete, w,
                             &w->work) != napi_ok) {
    reject_now(env, w->deferred);
    async_free(w);
    return promise;
  }
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    reject_now(env, w->deferred);
    if (napi_delete_async_work(env, w->work) != napi_ok) (void)take_exception(env);
    async_free(w);
    return promise;
  }
  if (w->h != NULL) w->h->inflight++;
  return promise;
}

/* Copies the fields into one block `w->bytes` and points `dst` at the copies. */
static bool copy_fields(napi_env env, async_t *w, portcullis_str **dst, const portcullis_str *src,
                        int n) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += src[i].len;
  w->bytes = malloc(total ? total : 1);
  if (w->bytes == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return false;
  }
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    if (src[i].ptr == NULL) {
      dst[i]->ptr = NULL;
      dst[i]->len = 0;
      continue;
    }
    if (src[i].len) memcpy(w->bytes + at, src[i].ptr, src[i].len);
    dst[i]->ptr = w->bytes + at;
    dst[i]->len = src[i].len;
    at += src[i].len;
  }
  return true;
}

/* limiterCheckAsync(token, policy, key[, cost]) (and the other ops): a Promise of the Decision. */
static napi_value js_limiter_decide_async(napi_env env, napi_callback_info info) {
  void *data = NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str key;
  uint32_t policy, cost;
  handle_t *h = decide_args(env, info, &data, &a, &key, &policy, &cost);
  if (h == NULL) {
    arena_free(&a);
    return NULL;
  }
  async_t *w = async_new(env, h);
  if (w == NULL) {
    arena_free(&a);
    return NULL;
  }
  w->op = (int)(intptr_t)data;
  w->policy = policy;
  w->cost = cost;
  portcullis_str *dst[1] = {&w->key};
  bool copied = copy_fields(env, w, dst, &key, 1);
  arena_free(&a);
  if (!copied) {
    async_free(w);
    return NULL;
  }
  if (w->key.ptr == NULL) w->key.ptr = EMPTY;
  return async_queue(env, w, "portcullis.Limiter");
}

/* gateDecideAsync(...): as gateDecide, a Promise of the Outcome. */
static napi_value js_gate_decide_async(napi_env env, napi_callback_info info) {
  napi_value argv[1 + REQ_FIELDS + 1];
  if (!get_args(env, info, 1 + REQ_FIELDS + 1, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  char stack[2048];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_request req;
  memset(&req, 0, sizeof req);
  if (!read_request(env, argv + 1, &a, &req)) {
    arena_free(&a);
    return NULL;
  }
  async_t *w = async_new(env, h);
  if (w == NULL) {
    arena_free(&a);
    return NULL;
  }
  w->op = AOP_GATE_DECIDE;
  w->req.private_network = req.private_network;
  portcullis_str src[REQ_FIELDS] = {req.method,    req.path,          req.origin,
                                    req.request_method, req.request_headers, req.client_ip,
                                    req.principal, req.tier,          req.forwarded_for,
                                    req.forwarded};
  portcullis_str *dst[REQ_FIELDS] = {&w->req.method,          &w->req.path,
                                     &w->req.origin,          &w->req.request_method,
                                     &w->req.request_headers, &w->req.client_ip,
                                     &w->req.principal,       &w->req.tier,
                                     &w->req.forwarded_for,   &w->req.forwarded};
  bool copied = copy_fields(env, w, dst, src, REQ_FIELDS);
  arena_free(&a);
  if (!copied) {
    async_free(w);
    return NULL;
  }
  /* Present but empty fields stay present. */
  for (int i = 0; i < REQ_FIELDS; i++) {
    if (src[i].ptr != NULL && dst[i]->len == 0) dst[i]->ptr = EMPTY;
  }
  return async_queue(env, w, "portcullis.Gate");
}

/* gateResetAsync(token, policy, kind, key): as gateReset, a Promise of whether it had state. */
static napi_value js_gate_reset_async(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv, NULL)) return NULL;
  handle_t *h = open_handle(env, argv[0], K_GATE);
  if (h == NULL) return NULL;
  uint32_t kind;
  if (!arg_u32(env, argv[2], "kind", &kind)) return NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str src[2];
  if (!arg_bytes(env, argv[1], &a, &src[0], "policy", false) ||
      !arg_bytes(env, argv[3], &a, &src[1], "key", false)) {
    arena_free(&a);
    return NULL;
  }
  async_t *w = async_new(env, h);
  if (w == NULL) {
    arena_free(&a);
    return NULL;
  }
  w->op = AOP_GATE_RESET;
  w->key_kind = kind;
  portcullis_str *dst[2] = {&w->policy_name, &w->key};
  bool copied = copy_fields(env, w, dst, src, 2);
  arena_free(&a);
  if (!copied) {
    async_free(w);
    return NULL;
  }
  if (w->policy_name.ptr == NULL) w->policy_name.ptr = EMPTY;
  if (w->key.ptr == NULL) w->key.ptr = EMPTY;
  return async_queue(env, w, "portcullis.Gate");
}

/* limiterResetAsync(token, policy, key): as limiterReset, a Promise of whether it had state. */
static napi_value js_limiter_reset_async(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  uint32_t policy;
  handle_t *h = open_handle(env, argv[0], K_LIMITER);
  if (h == NULL || !arg_u32(env, argv[1], "policy", &policy)) return NULL;
  char stack[512];
  arena_t a;
  arena_init(&a, stack, sizeof stack);
  portcullis_str key;
  if (!arg_bytes(env, argv[2], &a, &key, "key", false)) {
    arena_free(&a);
    return NULL;
  }
  async_t *w = async_new(env, h);
  if (w == NULL) {
    arena_free(&a);
    return NULL;
  }
  w->op = AOP_LIMITER_RESET;
  w->policy = policy;
  portcullis_str *dst[1] = {&w->key};
  bool copied = copy_fields(env, w, dst, &key, 1);
  arena_free(&a);
  if (!copied) {
    async_free(w);
    return NULL;
  }
  if (w->key.ptr == NULL) w->key.ptr = EMPTY;
  return async_queue(env, w, "portcullis.Limiter");
}

/* outcomeReleaseAsync(outcome): as outcomeRelease, on the pool; a Promise of whether the
 * leases were held. The outcome needs no handle: it keeps what it releases into alive. */
static napi_value js_outcome_release_async(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  outcome_lease_t *l = unwrap_kind(env, argv[0], K_OUTCOME);
  if (l == NULL) return NULL;
  async_t *w = async_new(env, NULL);
  if (w == NULL) return NULL;
  if (l->outcome == NULL) {
    /* Already given back: a promise of false, settled now. */
    napi_value promise, no;
    napi_deferred deferred;
    free(w);
    NAPI(napi_create_promise(env, &deferred, &promise));
    NAPI(napi_get_boolean(env, false, &no));
    NAPI(napi_resolve_deferred(env, deferred, no));
    return promise;
  }
  w->op = AOP_OUTCOME_RELEASE;
  w->release = l->outcome;
  l->outcome = NULL;
  return async_queue(env, w, "portcullis.Outcome");
}

/* gateMayBlock(token) / limiterMayBlock(token): whether its calls may wait on the network (the
 * Redis store); the JavaScript side then runs them only on the pool. */
static napi_value js_may_block(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  void *data = NULL;
  if (!get_args(env, info, 1, argv, &data)) return NULL;
  int kind = (int)(intptr_t)data;
  handle_t *h = open_handle(env, argv[0], kind);
  if (h == NULL) return NULL;
  bool may = false;
  portcullis_result rc = kind == K_GATE ? portcullis_gate_may_block(h->ptr, &may)
                                        : portcullis_limiter_may_block(h->ptr, &may);
  if (rc != PORTCULLIS_RESULT_OK) {
    throw_result(env, rc);
    return NULL;
  }
  NAPI(napi_get_boolean(env, may, &out));
  return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Module                                                                                    */

static bool add_fn(napi_env env, napi_value exports, const char *name, napi_callback cb,
                   void *data) {
  napi_value fn;
  NAPI_BOOL(napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, data, &fn));
  NAPI_BOOL(napi_set_named_property(env, exports, name, fn));
  return true;
}

#define K(x) ((void *)(intptr_t)(x))

NAPI_MODULE_INIT() {
  if (portcullis_abi_version() != PORTCULLIS_ABI_VERSION) {
    napi_throw_error(env, "PORTCULLIS_ABI_MISMATCH",
                     "libportcullis has another ABI version than include/portcullis.h");
    return NULL;
  }
  inst_t *inst = calloc(1, sizeof *inst);
  if (inst == NULL) {
    napi_throw_error(env, "PORTCULLIS_NAPI_ERROR", "out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, inst, inst_finalize, NULL) != napi_ok) {
    free(inst);
    throw_napi(env);
    return NULL;
  }
  /* From here the instance data's finalizer frees inst. */
  napi_value ab, f64, v;
  void *data = NULL;
  NAPI(napi_create_arraybuffer(env, BUF_LEN * sizeof(double), &data, &ab));
  NAPI(napi_create_reference(env, ab, 1, &inst->buffer_ref));
  inst->buf = data;
  NAPI(napi_create_typedarray(env, napi_float64_array, BUF_LEN, ab, 0, &f64));
  NAPI(napi_set_named_property(env, exports, "buffer", f64));
  NAPI(napi_create_uint32(env, BUF_SEG, &v));
  NAPI(napi_set_named_property(env, exports, "segmentsAt", v));
  NAPI(napi_create_string_utf8(env, portcullis_version(), NAPI_AUTO_LENGTH, &v));
  NAPI(napi_set_named_property(env, exports, "version", v));
  NAPI(napi_create_uint32(env, portcullis_abi_version(), &v));
  NAPI(napi_set_named_property(env, exports, "abiVersion", v));

  struct {
    const char *name;
    napi_callback cb;
    void *data;
  } fns[] = {
      {"init", js_init, NULL},
      {"resultName", js_result_name, NULL},
      {"gateOpen", js_open, (void *)&OPEN_SPECS[0]},
      {"gateOpenFile", js_open, (void *)&OPEN_SPECS[1]},
      {"limiterOpen", js_open, (void *)&OPEN_SPECS[2]},
      {"limiterOpenFile", js_open, (void *)&OPEN_SPECS[3]},
      {"corsOpen", js_open, (void *)&OPEN_SPECS[4]},
      {"gateToken", js_token, K(K_GATE)},
      {"limiterToken", js_token, K(K_LIMITER)},
      {"corsToken", js_token, K(K_CORS)},
      {"gateClose", js_close, K(K_GATE)},
      {"limiterClose", js_close, K(K_LIMITER)},
      {"corsClose", js_close, K(K_CORS)},
      {"gateClosed", js_is_closed, K(K_GATE)},
      {"limiterClosed", js_is_closed, K(K_LIMITER)},
      {"corsClosed", js_is_closed, K(K_CORS)},
      {"gateStats", js_stats, K(K_GATE)},
      {"limiterStats", js_stats, K(K_LIMITER)},
      {"gateDecide", js_gate_decide, NULL},
      {"gateDecideAsync", js_gate_decide_async, NULL},
      {"gateReload", js_gate_reload, NULL},
      {"gateReset", js_gate_reset, NULL},
      {"gateResetAsync", js_gate_reset_async, NULL},
      {"gateMayBlock", js_may_block, K(K_GATE)},
      {"limiterMayBlock", js_may_block, K(K_LIMITER)},
      {"outcomeReleaseAsync", js_outcome_release_async, NULL},
      {"gateMetrics", js_gate_metrics, NULL},
      {"gatePublishMetrics", js_gate_publish_metrics, NULL},
      {"outcomeRelease", js_outcome_release, NULL},
      {"limiterPolicy", js_limiter_policy, NULL},
      {"limiterCheck", js_limiter_decide, K(OP_CHECK)},
      {"limiterPeek", js_limiter_decide, K(OP_PEEK)},
      {"limiterPenalize", js_limiter_decide, K(OP_PENALIZE)},
      {"limiterRefund", js_limiter_decide, K(OP_REFUND)},
      {"limiterCheckAsync", js_limiter_decide_async, K(OP_CHECK)},
      {"limiterPeekAsync", js_limiter_decide_async, K(OP_PEEK)},
      {"limiterPenalizeAsync", js_limiter_decide_async, K(OP_PENALIZE)},
      {"limiterRefundAsync", js_limiter_decide_async, K(OP_REFUND)},
      {"limiterReset", js_limiter_reset, NULL},
      {"limiterResetAsync", js_limiter_reset_async, NULL},
      {"limiterAcquire", js_limiter_acquire, NULL},
      {"limiterHeaders", js_limiter_headers, NULL},
      {"leaseRelease", js_lease_release, NULL},
      {"leaseAbandon", js_lease_abandon, NULL},
      {"corsDecide", js_cors_decide, NULL},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    if (!add_fn(env, exports, fns[i].name, fns[i].cb, fns[i].data)) return NULL;
  }
  return exports;
}
