
/*
 * portcullis for nginx: rate limiting and CORS decisions from a portcullis
 * TOML file, over the portcullis C ABI (include/portcullis.h).
 *
 *   portcullis_config   /etc/nginx/portcullis.toml;   (http)
 *   portcullis          on | off;                     (http, server, location)
 *   portcullis_principal $variable;                   (http, server, location)
 *   portcullis_tier     $variable;                    (http, server, location)
 *   portcullis_status_code 429;                       (http, server, location)
 *   portcullis_log_level info|notice|warn|error;      (http, server, location)
 *   portcullis_metrics;                               (location)
 *
 * portcullis_metrics makes a location answer GET with the gate's metrics in
 * the Prometheus text format. With the shared store each worker publishes its
 * counters to the store's board every second (and at exit), and the worker
 * that answers a scrape sums the board: every scrape reports the whole host.
 * The gate decides once per main request in the preaccess phase (after
 * realip, limit_conn and limit_req, before access and auth): a preflight is
 * answered 204, a CORS refusal 403, a limited request 429 (or
 * portcullis_status_code); a shaped request waits on a timer; an allowed one
 * goes on. A header filter adds the decision's headers to whatever response
 * the request ends with. The decision, with its concurrency leases, lives in
 * a cleanup of the request pool: the leases come back when the request ends,
 * however it ends.
 *
 * The gate is opened while the configuration is read, in the master process,
 * and the workers inherit it (the shared store works across fork(), and the
 * Redis store connects again in each worker); each configuration cycle frees
 * its own gate.
 *
 * With the Redis store a decision is a network round trip: it runs on nginx's
 * thread pool ("default", sized by `thread_pool default threads=N;` in the
 * main context), and the request waits for it as for a threaded file read,
 * its worker serving others meanwhile. Leases go back on the pool too.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <portcullis.h>

#include "ngx_http_portcullis_scan.h"


#define NGX_HTTP_PORTCULLIS_PASSED      1
#define NGX_HTTP_PORTCULLIS_DELAYED     2
#define NGX_HTTP_PORTCULLIS_REJECTED    3
#define NGX_HTTP_PORTCULLIS_PREFLIGHT   4
#define NGX_HTTP_PORTCULLIS_FORBIDDEN   5

/* Outcomes kept for reuse by a worker: no allocation per request. */
#define NGX_HTTP_PORTCULLIS_SPARE       1024

/* The largest TOML file read. */
#define NGX_HTTP_PORTCULLIS_MAX_FILE    (16 * 1024 * 1024)

/* The most headers taken from one decision (it renders about a dozen). */
#define NGX_HTTP_PORTCULLIS_MAX_HEADERS 32


typedef struct {
    ngx_str_t                   file;
    portcullis_gate            *gate;
    ngx_uint_t                  store;       /* NGX_HTTP_PORTCULLIS_STORE_* */
    ngx_uint_t                  cors;        /* the file has a [cors] table */
#if (NGX_THREADS)
    /* Set when decisions wait on the network (the Redis store). */
    ngx_thread_pool_t          *thread_pool;
#endif
} ngx_http_portcullis_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_http_complex_value_t   *principal;
    ngx_http_complex_value_t   *tier;
    ngx_uint_t                  status_code;
    ngx_uint_t                  log_level;
    ngx_uint_t                  metrics;     /* portcullis_metrics here */
} ngx_http_portcullis_loc_conf_t;


typedef struct {
    portcullis_outcome         *outcome;
    portcullis_outcome_info     info;
    ngx_uint_t                  status;      /* NGX_HTTP_PORTCULLIS_* */
    ngx_uint_t                  cors;        /* the main conf's cors */
    ngx_uint_t                  waiting;     /* decided on the thread pool now */
    ngx_uint_t                  decided;     /* the pool's decision, to apply */
    portcullis_result           rc;          /* the pool's result */
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool; /* where the leases go back */
#endif
} ngx_http_portcullis_ctx_t;


#if (NGX_THREADS)

/* A decision on the thread pool: what the thread reads and writes. */
typedef struct {
    portcullis_gate            *gate;
    portcullis_request          req;
    ngx_http_portcullis_ctx_t  *ctx;
} ngx_http_portcullis_task_t;

static ngx_int_t ngx_http_portcullis_post(ngx_http_request_t *r,
    ngx_http_portcullis_ctx_t *ctx, portcullis_gate *gate,
    portcullis_request *req, ngx_thread_pool_t *pool);
static void ngx_http_portcullis_thread_decide(void *data, ngx_log_t *log);
static void ngx_http_portcullis_thread_done(ngx_event_t *ev);
static void ngx_http_portcullis_thread_release(void *data, ngx_log_t *log);
static void ngx_http_portcullis_thread_released(ngx_event_t *ev);

#endif


static ngx_int_t ngx_http_portcullis_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portcullis_apply(ngx_http_request_t *r,
    ngx_http_portcullis_ctx_t *ctx, ngx_http_portcullis_loc_conf_t *plcf,
    portcullis_result rc);
static void ngx_http_portcullis_delay(ngx_http_request_t *r);
static ngx_int_t ngx_http_portcullis_request(ngx_http_request_t *r,
    ngx_http_portcullis_loc_conf_t *plcf, portcullis_request *req);
static ngx_int_t ngx_http_portcullis_text(ngx_http_request_t *r,
    u_char *data, size_t len, portcullis_str *out);
static size_t ngx_http_portcullis_utf8(u_char *p, size_t n);
static ngx_http_portcullis_ctx_t *ngx_http_portcullis_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_portcullis_cleanup(void *data);
static portcullis_outcome *ngx_http_portcullis_outcome(ngx_log_t *log);
static void ngx_http_portcullis_free_spare(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_portcullis_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_portcullis_add_headers(ngx_http_request_t *r,
    ngx_http_portcullis_ctx_t *ctx);
static ngx_int_t ngx_http_portcullis_merge_vary(ngx_http_request_t *r,
    portcullis_str *value);
static ngx_uint_t ngx_http_portcullis_vary(ngx_http_request_t *r,
    u_char *token, size_t len, ngx_table_elt_t **first);
static ngx_uint_t ngx_http_portcullis_has_token(ngx_str_t *list,
    u_char *token, size_t len);

static ngx_int_t ngx_http_portcullis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_portcullis_text_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_portcullis_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_str_t ngx_http_portcullis_last_error(ngx_pool_t *pool,
    portcullis_result rc);
static char *ngx_http_portcullis_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_portcullis_free_gate(void *data);
static ngx_int_t ngx_http_portcullis_read_file(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *text);
static ngx_int_t ngx_http_portcullis_add_variables(ngx_conf_t *cf);
static void *ngx_http_portcullis_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_portcullis_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_portcullis_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_portcullis_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_portcullis_init_module(ngx_cycle_t *cycle);
static void ngx_http_portcullis_exit(ngx_cycle_t *cycle);
static char *ngx_http_portcullis_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_portcullis_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_portcullis_init_process(ngx_cycle_t *cycle);
static void ngx_http_portcullis_exit_process(ngx_cycle_t *cycle);
static void ngx_http_portcullis_publish(ngx_event_t *ev);


static ngx_conf_enum_t  ngx_http_portcullis_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_portcullis_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_http_portcullis_commands[] = {

    { ngx_string("portcullis_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_portcullis_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("portcullis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portcullis_loc_conf_t, enable),
      NULL },

    { ngx_string("portcullis_principal"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portcullis_loc_conf_t, principal),
      NULL },

    { ngx_string("portcullis_tier"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portcullis_loc_conf_t, tier),
      NULL },

    { ngx_string("portcullis_status_code"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portcullis_loc_conf_t, status_code),
      &ngx_http_portcullis_status_bounds },

    { ngx_string("portcullis_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_portcullis_loc_conf_t, log_level),
      &ngx_http_portcullis_log_levels },

    { ngx_string("portcullis_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_portcullis_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_portcullis_module_ctx = {
    ngx_http_portcullis_add_variables,     /* preconfiguration */
    ngx_http_portcullis_init,              /* postconfiguration */

    ngx_http_portcullis_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_portcullis_create_loc_conf,   /* create location configuration */
    ngx_http_portcullis_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_portcullis_module = {
    NGX_MODULE_V1,
    &ngx_http_portcullis_module_ctx,       /* module context */
    ngx_http_portcullis_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_portcullis_init_module,       /* init module */
    ngx_http_portcullis_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_portcullis_exit_process,      /* exit process */
    ngx_http_portcullis_exit,              /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_portcullis_vars[] = {

    { ngx_string("portcullis_status"), NULL,
      ngx_http_portcullis_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("portcullis_policy"), NULL,
      ngx_http_portcullis_text_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("portcullis_reason"), NULL,
      ngx_http_portcullis_text_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("portcullis_remaining"), NULL,
      ngx_http_portcullis_remaining_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_portcullis_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("DELAYED"),
    ngx_string("REJECTED"),
    ngx_string("PREFLIGHT"),
    ngx_string("FORBIDDEN")
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static portcullis_outcome  *ngx_http_portcullis_spare[NGX_HTTP_PORTCULLIS_SPARE];
static ngx_uint_t           ngx_http_portcullis_nspare;


/* The request. */

static ngx_int_t
ngx_http_portcullis_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    portcullis_result                 rc;
    portcullis_request                req;
    ngx_http_portcullis_ctx_t        *ctx;
    ngx_http_portcullis_loc_conf_t   *plcf;
    ngx_http_portcullis_main_conf_t  *pmcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_portcullis_module);

    if (!plcf->enable) {
        return NGX_DECLINED;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portcullis_module);

    if (pmcf->gate == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_portcullis_get_ctx(r);

    if (ctx != NULL) {
        if (ctx->waiting) {
            return NGX_AGAIN;
        }

        if (ctx->decided) {
            /* Back from the thread pool with the decision. */
            ctx->decided = 0;
            return ngx_http_portcullis_apply(r, ctx, plcf, ctx->rc);
        }

        /* Decided: back from the shaping delay, or redirected. */
        return NGX_DECLINED;
    }

    /*
     * The cleanup comes first: from the moment the gate hands out leases,
     * the end of the request gives them back.
     */

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_portcullis_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_portcullis_ctx_t));
    ctx->cors = pmcf->cors;

    cln->handler = ngx_http_portcullis_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_portcullis_module);

    if (ngx_http_portcullis_request(r, plcf, &req) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->outcome = ngx_http_portcullis_outcome(r->connection->log);
    if (ctx->outcome == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

#if (NGX_THREADS)
    if (pmcf->thread_pool != NULL) {
        ctx->thread_pool = pmcf->thread_pool;
        return ngx_http_portcullis_post(r, ctx, pmcf->gate, &req,
                                        pmcf->thread_pool);
    }
#endif

    rc = portcullis_gate_decide_into(pmcf->gate, &req, ctx->outcome);

    return ngx_http_portcullis_apply(r, ctx, plcf, rc);
}


/* Acts on a decision: answers, delays, or lets the request go on. */

static ngx_int_t
ngx_http_portcullis_apply(ngx_http_request_t *r,
    ngx_http_portcullis_ctx_t *ctx, ngx_http_portcullis_loc_conf_t *plcf,
    portcullis_result rc)
{
    ngx_str_t        msg;
    ngx_msec_t       delay;
    portcullis_str   reason;

    if (rc == PORTCULLIS_RESULT_OK) {
        rc = portcullis_outcome_get_info(ctx->outcome, &ctx->info);
    }

    if (rc != PORTCULLIS_RESULT_OK) {
        msg = ngx_http_portcullis_last_error(r->pool, rc);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portcullis: no decision: %V", &msg);

        /* Nothing to add to the error page, nothing held. */
        ngx_http_portcullis_cleanup(ctx);

        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->info.action) {

    case PORTCULLIS_ACTION_PREFLIGHT:
        ctx->status = NGX_HTTP_PORTCULLIS_PREFLIGHT;
        return ctx->info.status ? ctx->info.status : NGX_HTTP_NO_CONTENT;

    case PORTCULLIS_ACTION_FORBIDDEN:
        ctx->status = NGX_HTTP_PORTCULLIS_FORBIDDEN;

        if (portcullis_outcome_reason(ctx->outcome, &reason)
            == PORTCULLIS_RESULT_OK)
        {
            ngx_log_error(plcf->log_level, r->connection->log, 0,
                          "portcullis: %*s", reason.len, reason.ptr);
        }

        return ctx->info.status ? ctx->info.status : NGX_HTTP_FORBIDDEN;

    case PORTCULLIS_ACTION_LIMITED:
        ctx->status = NGX_HTTP_PORTCULLIS_REJECTED;

        if (portcullis_outcome_reason(ctx->outcome, &reason)
            == PORTCULLIS_RESULT_OK)
        {
            ngx_log_error(plcf->log_level, r->connection->log, 0,
                          "portcullis: %*s", reason.len, reason.ptr);
        }

        return plcf->status_code;

    default: /* PORTCULLIS_ACTION_PASS */
        break;
    }

    if (ctx->info.delay_ns == 0) {
        ctx->status = NGX_HTTP_PORTCULLIS_PASSED;
        return NGX_DECLINED;
    }

    /* Shaping: wait on a timer, as limit_req does; never sleep. */

    ctx->status = NGX_HTTP_PORTCULLIS_DELAYED;

    if (ctx->info.delay_ns >= (uint64_t) NGX_MAX_INT32_VALUE * 1000000) {
        delay = NGX_MAX_INT32_VALUE;

    } else {
        delay = (ngx_msec_t) ((ctx->info.delay_ns + 999999) / 1000000);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portcullis: delaying request by %M ms", delay);

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_portcullis_delay;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, delay);

    return NGX_AGAIN;
}


#if (NGX_THREADS)

/* Posts the decision to the thread pool; the request waits, its worker does not. */

static ngx_int_t
ngx_http_portcullis_post(ngx_http_request_t *r, ngx_http_portcullis_ctx_t *ctx,
    portcullis_gate *gate, portcullis_request *req, ngx_thread_pool_t *pool)
{
    ngx_thread_task_t           *task;
    ngx_http_portcullis_task_t  *t;

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_portcullis_task_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = task->ctx;
    t->gate = gate;
    t->req = *req;     /* its strings live in the request, which waits */
    t->ctx = ctx;

    task->handler = ngx_http_portcullis_thread_decide;
    task->event.data = r;
    task->event.handler = ngx_http_portcullis_thread_done;

    if (ngx_thread_task_post(pool, task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->waiting = 1;
    r->main->blocked++;
    r->aio = 1;

    return NGX_AGAIN;
}


/* On a pool thread: only the library, no nginx structure but the task's. */

static void
ngx_http_portcullis_thread_decide(void *data, ngx_log_t *log)
{
    ngx_http_portcullis_task_t  *t = data;

    (void) log;

    t->ctx->rc = portcullis_gate_decide_into(t->gate, &t->req, t->ctx->outcome);
}


/* Back on the event loop: the phases go on from this module's handler. */

static void
ngx_http_portcullis_thread_done(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_portcullis_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ctx = ngx_http_portcullis_get_ctx(r);

    r->main->blocked--;
    r->aio = 0;

    if (ctx != NULL) {
        ctx->waiting = 0;
        ctx->decided = 1;
    }

    if (r->done) {
        /* Finalized meanwhile (the client went away): let it end. */
        c->write->handler(c->write);

    } else {
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
    }
}


/*
 * Gives an outcome's leases back on the pool (a release on Redis is a round
 * trip), then frees it. The task is allocated alone: the request it served
 * is gone.
 */

static void
ngx_http_portcullis_thread_release(void *data, ngx_log_t *log)
{
    portcullis_outcome  **outcome = data;
    portcullis_result     rc;

    rc = portcullis_outcome_release(*outcome);

    if (rc != PORTCULLIS_RESULT_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "portcullis: releasing leases failed: %s",
                      portcullis_result_name(rc));
    }

    portcullis_outcome_free(*outcome);
    *outcome = NULL;
}


static void
ngx_http_portcullis_thread_released(ngx_event_t *ev)
{
    ngx_free(ev->data);
}

#endif


static void
ngx_http_portcullis_delay(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "portcullis: delay");

    wev = r->connection->write;

    if (wev->delayed) {

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/* The request as the gate reads it. Any byte the client sends is handled. */

static ngx_int_t
ngx_http_portcullis_request(ngx_http_request_t *r,
    ngx_http_portcullis_loc_conf_t *plcf, portcullis_request *req)
{
    u_char           *p;
    size_t            len;
    ngx_str_t         value;
    ngx_uint_t        i, nacrh;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *origin, *acrm, *acrh;

    ngx_memzero(req, sizeof(portcullis_request));

    if (ngx_http_portcullis_text(r, r->method_name.data, r->method_name.len,
                                 &req->method)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* The normalized path, without the query string. */
    if (ngx_http_portcullis_text(r, r->uri.data, r->uri.len, &req->path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
#if (NGX_HAVE_INET6)
    case AF_INET6:
#endif
        req->client_ip.ptr = r->connection->addr_text.data;
        req->client_ip.len = r->connection->addr_text.len;
        break;

    default:
        /* A unix socket: no address, the gate keys it as unknown. */
        break;
    }

    origin = NULL;
    acrm = NULL;
    acrh = NULL;
    nacrh = 0;
    len = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len < sizeof("Origin") - 1) {
            continue;
        }

        if (h[i].key.len == sizeof("Origin") - 1) {
            if (origin == NULL
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin",
                                   sizeof("Origin") - 1) == 0)
            {
                origin = &h[i];
            }

            continue;
        }

        if (h[i].key.len < sizeof("Access-Control-Request-") - 1
            || ngx_strncasecmp(h[i].key.data,
                               (u_char *) "Access-Control-Request-",
                               sizeof("Access-Control-Request-") - 1)
               != 0)
        {
            continue;
        }

        p = h[i].key.data + sizeof("Access-Control-Request-") - 1;

        switch (h[i].key.len - (sizeof("Access-Control-Request-") - 1)) {

        case sizeof("Method") - 1:
            if (acrm == NULL
                && ngx_strncasecmp(p, (u_char *) "Method",
                                   sizeof("Method") - 1) == 0)
            {
                acrm = &h[i];
            }

            break;

        case sizeof("Headers") - 1:
            if (ngx_strncasecmp(p, (u_char *) "Headers",
                                sizeof("Headers") - 1) == 0)
            {
                if (acrh == NULL) {
                    acrh = &h[i];
                }

                nacrh++;
                len += h[i].value.len + 1;
            }

            break;

        case sizeof("Private-Network") - 1:
            if (ngx_strncasecmp(p, (u_char *) "Private-Network",
                                sizeof("Private-Network") - 1) == 0
                && h[i].value.len == sizeof("true") - 1
                && ngx_strncasecmp(h[i].value.data, (u_char *) "true",
                                   sizeof("true") - 1) == 0)
            {
                req->private_network = 1;
            }

            break;

        default:
            break;
        }
    }

    if (origin
        && ngx_http_portcullis_text(r, origin->value.data, origin->value.len,
                                    &req->origin)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (acrm
        && ngx_http_portcullis_text(r, acrm->value.data, acrm->value.len,
                                    &req->request_method)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (nacrh == 1) {
        value = acrh->value;

    } else if (nacrh > 1) {
        /* Repeated headers, joined with commas. */

        value.data = ngx_pnalloc(r->pool, len);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        p = value.data;
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].hash == 0
                || h[i].key.len != sizeof("Access-Control-Request-Headers") - 1
                || ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Access-Control-Request-Headers",
                                   sizeof("Access-Control-Request-Headers") - 1)
                   != 0)
            {
                continue;
            }

            if (p != value.data) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
        }

        value.len = p - value.data;

    } else {
        ngx_str_null(&value);
    }

    if (nacrh
        && ngx_http_portcullis_text(r, value.data, value.len,
                                    &req->request_headers)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (plcf->principal) {
        if (ngx_http_complex_value(r, plcf->principal, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        /* Empty (an absent header, a variable not found): anonymous. */
        if (value.len
            && ngx_http_portcullis_text(r, value.data, value.len,
                                        &req->principal)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (plcf->tier) {
        if (ngx_http_complex_value(r, plcf->tier, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len
            && ngx_http_portcullis_text(r, value.data, value.len, &req->tier)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The gate takes UTF-8 text. Text that is not (a client can send any byte)
 * is passed with each byte outside a valid sequence written as %XX, so that
 * the rest still matches routes and origins, and no input makes the decision
 * fail.
 */

static ngx_int_t
ngx_http_portcullis_text(ngx_http_request_t *r, u_char *data, size_t len,
    portcullis_str *out)
{
    u_char  *p, *end, *dst;
    size_t   n;

    static u_char  hex[] = "0123456789ABCDEF";

    if (data == NULL) {
        data = (u_char *) "";
        len = 0;
    }

    n = ngx_http_portcullis_utf8(data, len);

    if (n == len) {
        out->ptr = data;
        out->len = len;
        return NGX_OK;
    }

    dst = ngx_pnalloc(r->pool, len * 3);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->ptr = dst;

    p = data;
    end = data + len;

    while (p < end) {
        n = ngx_http_portcullis_utf8(p, end - p);

        dst = ngx_cpymem(dst, p, n);
        p += n;

        if (p < end) {
            *dst++ = '%';
            *dst++ = hex[*p >> 4];
            *dst++ = hex[*p & 0xf];
            p++;
        }
    }

    out->len = dst - out->ptr;

    return NGX_OK;
}


/* The length of the longest valid UTF-8 prefix (RFC 3629). */

static size_t
ngx_http_portcullis_utf8(u_char *start, size_t n)
{
    u_char      *p, *end;
    uint32_t     c;
    ngx_uint_t   need, k;

    p = start;
    end = start + n;

    while (p < end) {

        if (*p < 0x80) {
            p++;
            continue;
        }

        if (*p >= 0xc2 && *p <= 0xdf) {
            need = 1;
            c = *p & 0x1f;

        } else if (*p >= 0xe0 && *p <= 0xef) {
            need = 2;
            c = *p & 0x0f;

        } else if (*p >= 0xf0 && *p <= 0xf4) {
            need = 3;
            c = *p & 0x07;

        } else {
            break;
        }

        if ((size_t) (end - p) <= need) {
            break;
        }

        for (k = 1; k <= need; k++) {
            if ((p[k] & 0xc0) != 0x80) {
                break;
            }

            c = (c << 6) | (p[k] & 0x3f);
        }

        if (k <= need) {
            break;
        }

        /* Overlong forms, surrogates, past U+10FFFF. */
        if ((need == 2 && c < 0x800)
            || (need == 3 && (c < 0x10000 || c > 0x10ffff))
            || (c >= 0xd800 && c <= 0xdfff))
        {
            break;
        }

        p += need + 1;
    }

    return p - start;
}


/*
 * The decision of the main request. Internal redirects (error_page,
 * try_files, proxy_intercept_errors) clear r->ctx: the record is found again
 * among the pool's cleanups, as realip does.
 */

static ngx_http_portcullis_ctx_t *
ngx_http_portcullis_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_portcullis_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_portcullis_module);

    if (ctx) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_portcullis_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_portcullis_module);
            return ctx;
        }
    }

    return NULL;
}


/* The request is over (answered, failed, or its client went away). */

static void
ngx_http_portcullis_cleanup(void *data)
{
    ngx_http_portcullis_ctx_t  *ctx = data;

    portcullis_result  rc;

    if (ctx->outcome == NULL) {
        return;
    }

#if (NGX_THREADS)
    /*
     * Read the outcome itself, not ctx->info: a request that ended while its
     * decision was on the pool (its client left) never applied it.
     */
    if (ctx->thread_pool != NULL
        && portcullis_outcome_get_info(ctx->outcome, &ctx->info)
           == PORTCULLIS_RESULT_OK
        && ctx->info.leases > 0)
    {
        ngx_thread_task_t  *task;

        task = ngx_calloc(sizeof(ngx_thread_task_t)
                          + sizeof(portcullis_outcome *), ngx_cycle->log);

        if (task != NULL) {
            task->ctx = task + 1;
            *(portcullis_outcome **) task->ctx = ctx->outcome;
            task->handler = ngx_http_portcullis_thread_release;
            task->event.data = task;
            task->event.handler = ngx_http_portcullis_thread_released;
            task->event.log = ngx_cycle->log;

            if (ngx_thread_task_post(ctx->thread_pool, task) == NGX_OK) {
                ctx->outcome = NULL;
                return;
            }

            ngx_free(task);
        }

        /* No task: give them back here, waiting on the network. */
    }
#endif

    rc = portcullis_outcome_release(ctx->outcome);

    if (rc != PORTCULLIS_RESULT_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "portcullis: releasing leases failed: %s",
                      portcullis_result_name(rc));

        portcullis_outcome_free(ctx->outcome);

    } else if (ngx_http_portcullis_nspare < NGX_HTTP_PORTCULLIS_SPARE) {
        ngx_http_portcullis_spare[ngx_http_portcullis_nspare++] = ctx->outcome;

    } else {
        portcullis_outcome_free(ctx->outcome);
    }

    ctx->outcome = NULL;
}


static portcullis_outcome *
ngx_http_portcullis_outcome(ngx_log_t *log)
{
    portcullis_result    rc;
    portcullis_outcome  *outcome;

    if (ngx_http_portcullis_nspare) {
        return ngx_http_portcullis_spare[--ngx_http_portcullis_nspare];
    }

    outcome = NULL;
    rc = portcullis_outcome_new(&outcome);

    if (rc != PORTCULLIS_RESULT_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "portcullis: portcullis_outcome_new() failed: %s",
                      portcullis_result_name(rc));
        return NULL;
    }

    return outcome;
}


static void
ngx_http_portcullis_free_spare(ngx_cycle_t *cycle)
{
    while (ngx_http_portcullis_nspare) {
        portcullis_outcome_free(
            ngx_http_portcullis_spare[--ngx_http_portcullis_nspare]);
    }
}


/* The response: every status, proxied, static, error pages alike. */

static ngx_int_t
ngx_http_portcullis_header_filter(ngx_http_request_t *r)
{
    ngx_http_portcullis_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_portcullis_get_ctx(r);

    if (ctx == NULL || ctx->outcome == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_portcullis_add_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Adds the decision's headers. A header of the same name from the response
 * (an upstream's Retry-After, say), and with CORS configured every
 * Access-Control-* header of the response, is removed first: the gate owns
 * them. Vary is merged. Safe to run twice on one response.
 */

static ngx_int_t
ngx_http_portcullis_add_headers(ngx_http_request_t *r,
    ngx_http_portcullis_ctx_t *ctx)
{
    size_t              count, i, n, k;
    ngx_int_t           vary;
    ngx_uint_t          j;
    portcullis_str      name[NGX_HTTP_PORTCULLIS_MAX_HEADERS];
    portcullis_str      value[NGX_HTTP_PORTCULLIS_MAX_HEADERS];
    ngx_list_part_t    *part;
    ngx_table_elt_t    *h;
    portcullis_result   rc;

    rc = portcullis_outcome_header_count(ctx->outcome, &count);

    if (rc != PORTCULLIS_RESULT_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portcullis: no headers: %s",
                      portcullis_result_name(rc));
        return NGX_OK;
    }

    if (count > NGX_HTTP_PORTCULLIS_MAX_HEADERS) {
        /* More than the gate ever renders: keep the first ones. */
        count = NGX_HTTP_PORTCULLIS_MAX_HEADERS;
    }

    /* The decision's headers, borrowed from the outcome. */

    n = 0;
    vary = -1;

    for (i = 0; i < count; i++) {
        rc = portcullis_outcome_header(ctx->outcome, i, &name[n], &value[n]);

        if (rc != PORTCULLIS_RESULT_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "portcullis: header %uz: %s", i,
                          portcullis_result_name(rc));
            break;
        }

        if (name[n].len == 0) {
            continue;
        }

        if (vary == -1
            && name[n].len == sizeof("Vary") - 1
            && ngx_strncasecmp((u_char *) name[n].ptr, (u_char *) "Vary",
                               sizeof("Vary") - 1) == 0)
        {
            vary = n;
        }

        n++;
    }

    if (n == 0) {
        return NGX_OK;
    }

    /* The response's own copies go. */

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (j = 0; /* void */ ; j++) {

        if (j >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            j = 0;
        }

        if (h[j].hash == 0) {
            continue;
        }

        if (ctx->cors
            && h[j].key.len > sizeof("Access-Control-") - 1
            && ngx_strncasecmp(h[j].key.data, (u_char *) "Access-Control-",
                               sizeof("Access-Control-") - 1) == 0)
        {
            h[j].hash = 0;
            continue;
        }

        for (k = 0; k < n; k++) {
            if ((ngx_int_t) k != vary
                && h[j].key.len == name[k].len
                && ngx_strncasecmp(h[j].key.data, (u_char *) name[k].ptr,
                                   name[k].len) == 0)
            {
                h[j].hash = 0;
                break;
            }
        }
    }

    /* The decision's. */

    for (k = 0; k < n; k++) {

        if ((ngx_int_t) k == vary) {
            continue;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        /*
         * Name and value stay borrowed from the outcome, which lives until
         * the request pool is destroyed: after the header is written, and
         * after the access log.
         */

        h->hash = 1;
        h->key.data = (u_char *) name[k].ptr;
        h->key.len = name[k].len;
        h->value.data = (u_char *) value[k].ptr;
        h->value.len = value[k].len;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        h->lowcase_key = ngx_pnalloc(r->pool, name[k].len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, h->key.data, name[k].len);
    }

    if (vary >= 0) {
        return ngx_http_portcullis_merge_vary(r, &value[vary]);
    }

    return NGX_OK;
}


/* Appends the tokens of `value` missing from the response's Vary. */

static ngx_int_t
ngx_http_portcullis_merge_vary(ngx_http_request_t *r, portcullis_str *value)
{
    u_char           *p, *end, *start, *dst;
    size_t            len;
    ngx_str_t         add;
    ngx_table_elt_t  *h, *first;

    if (ngx_http_portcullis_vary(r, (u_char *) "*", 1, &first)) {
        return NGX_OK;
    }

    if (first == NULL) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Vary");
        h->value.data = (u_char *) value->ptr;
        h->value.len = value->len;
        h->lowcase_key = (u_char *) "vary";
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        return NGX_OK;
    }

    /* The missing tokens, appended to the first Vary. */

    add.data = ngx_pnalloc(r->pool, first->value.len + 2 + value->len);
    if (add.data == NULL) {
        return NGX_ERROR;
    }

    dst = ngx_cpymem(add.data, first->value.data, first->value.len);

    p = (u_char *) value->ptr;
    end = p + value->len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        len = p - start;
        add.len = dst - add.data;

        if (len == 0
            || ngx_http_portcullis_vary(r, start, len, &h)
            || ngx_http_portcullis_has_token(&add, start, len))
        {
            continue;
        }

        if (dst != add.data) {
            *dst++ = ',';
            *dst++ = ' ';
        }

        dst = ngx_cpymem(dst, start, len);
    }

    add.len = dst - add.data;

    first->value = add;

    return NGX_OK;
}


/* Whether a Vary of the response names `token`; *first is the first Vary. */

static ngx_uint_t
ngx_http_portcullis_vary(ngx_http_request_t *r, u_char *token, size_t len,
    ngx_table_elt_t **first)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    *first = NULL;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Vary") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Vary",
                               sizeof("Vary") - 1) != 0)
        {
            continue;
        }

        if (*first == NULL) {
            *first = &h[i];
        }

        if (ngx_http_portcullis_has_token(&h[i].value, token, len)) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_portcullis_has_token(ngx_str_t *list, u_char *token, size_t len)
{
    u_char  *p, *end, *start;

    p = list->data;
    end = p + list->len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* Variables, for log_format and add_header. */

static ngx_int_t
ngx_http_portcullis_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_portcullis_ctx_t  *ctx;

    ctx = ngx_http_portcullis_get_ctx(r);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->len = ngx_http_portcullis_status_names[ctx->status].len;
    v->data = ngx_http_portcullis_status_names[ctx->status].data;

    return NGX_OK;
}


/* $portcullis_policy (data 0): the limiting policy; $portcullis_reason (1). */

static ngx_int_t
ngx_http_portcullis_text_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    portcullis_str              text;
    portcullis_result           rc;
    ngx_http_portcullis_ctx_t  *ctx;

    ctx = ngx_http_portcullis_get_ctx(r);

    if (ctx == NULL || ctx->outcome == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 0) {
        rc = portcullis_outcome_limited_by(ctx->outcome, &text);

    } else {
        rc = portcullis_outcome_reason(ctx->outcome, &text);
    }

    if (rc != PORTCULLIS_RESULT_OK || text.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->len = text.len;
    v->data = (u_char *) text.ptr;

    return NGX_OK;
}


static ngx_int_t
ngx_http_portcullis_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_http_portcullis_ctx_t  *ctx;

    ctx = ngx_http_portcullis_get_ctx(r);

    if (ctx == NULL || ctx->status == 0
        || ctx->info.remaining == UINT32_MAX)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->len = ngx_sprintf(p, "%uD", ctx->info.remaining) - p;
    v->data = p;

    return NGX_OK;
}


/* Configuration. */

static ngx_str_t
ngx_http_portcullis_last_error(ngx_pool_t *pool, portcullis_result rc)
{
    size_t     len;
    ngx_str_t  msg;

    len = 0;

    if (portcullis_last_error(NULL, 0, &len) == PORTCULLIS_RESULT_OK
        || len == 0)
    {
        /* No message: the code's name. */
        msg.data = (u_char *) portcullis_result_name(rc);
        msg.len = ngx_strlen(msg.data);
        return msg;
    }

    msg.data = ngx_pnalloc(pool, len);

    if (msg.data == NULL
        || portcullis_last_error(msg.data, len, &msg.len)
           != PORTCULLIS_RESULT_OK)
    {
        msg.data = (u_char *) portcullis_result_name(rc);
        msg.len = ngx_strlen(msg.data);
        return msg;
    }

    /* The message ends the log line: no trailing newline. */
    while (msg.len && (msg.data[msg.len - 1] == '\n'
                       || msg.data[msg.len - 1] == '\r'))
    {
        msg.len--;
    }

    return msg;
}


static char *
ngx_http_portcullis_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portcullis_main_conf_t *pmcf = conf;

    ngx_str_t                    *value, file, text, msg;
    portcullis_gate              *gate;
    portcullis_result             rc;
    ngx_pool_cleanup_t           *cln;
    ngx_http_portcullis_scan_t    scan;

    if (pmcf->file.data) {
        return "is duplicate";
    }

    if (portcullis_abi_version() != PORTCULLIS_ABI_VERSION) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: the library's ABI version is %uD, "
                           "this module was built for %d: rebuild it",
                           portcullis_abi_version(), PORTCULLIS_ABI_VERSION);
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    file = value[1];

    if (file.len == 0) {
        return "takes a file name";
    }

    /* A relative name is relative to the configuration's directory. */
    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    pmcf->file = file;

    if (ngx_http_portcullis_read_file(cf, &file, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_http_portcullis_scan(text.data, text.len, &scan);

    if (scan.error_line == 0
        && scan.store == NGX_HTTP_PORTCULLIS_STORE_SLED)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: %V:%ui: [store] kind = \"sled\" "
                           "belongs to one process, and nginx runs several "
                           "(its workers, and old and new ones during a "
                           "reload): use kind = \"shared\" with a path on "
                           "tmpfs or a local disk",
                           &file, scan.store_line);
        return NGX_CONF_ERROR;
    }

#if !(NGX_THREADS)
    if (scan.error_line == 0
        && scan.store == NGX_HTTP_PORTCULLIS_STORE_REDIS)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: %V:%ui: [store] kind = \"redis\" "
                           "needs nginx built --with-threads: a check waits "
                           "on the network and runs on a thread pool, never "
                           "on the worker's event loop; use kind = "
                           "\"shared\" for this host's workers",
                           &file, scan.store_line);
        return NGX_CONF_ERROR;
    }
#endif

    gate = NULL;
    rc = portcullis_gate_open_file(file.data, file.len, &gate);

    if (rc != PORTCULLIS_RESULT_OK) {
        msg = ngx_http_portcullis_last_error(cf->temp_pool, rc);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "portcullis: %V", &msg);
        return NGX_CONF_ERROR;
    }

    {
        /* Whatever the scan saw: a gate that may block decides on threads. */
        bool  may_block = false;

        if (portcullis_gate_may_block(gate, &may_block) != PORTCULLIS_RESULT_OK) {
            may_block = true;
        }

        if (may_block) {
#if (NGX_THREADS)
            /* The "default" pool, declared here when the config does not. */
            pmcf->thread_pool = ngx_thread_pool_add(cf, NULL);

            if (pmcf->thread_pool == NULL) {
                portcullis_gate_free(gate);
                return NGX_CONF_ERROR;
            }
#else
            portcullis_gate_free(gate);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "portcullis: %V: this store makes checks wait "
                               "on the network, which needs nginx built "
                               "--with-threads: use kind = \"shared\"",
                               &file);
            return NGX_CONF_ERROR;
#endif
        }
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        portcullis_gate_free(gate);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_portcullis_free_gate;
    cln->data = gate;

    if (scan.error_line) {
        /* Valid for the gate, yet this scan lost its way: refuse rather
         * than miss a setting that would block the workers. */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: %V:%ui: this module could not follow "
                           "the TOML here to check the store kind and the "
                           "durability; write it in plain TOML 1.0",
                           &file, scan.error_line);
        return NGX_CONF_ERROR;
    }

    if (scan.immediate_line) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: %V:%ui: durability = \"immediate\" "
                           "makes a decision wait for its write to reach the "
                           "disk, which would block an nginx worker and "
                           "every connection it serves: use \"write_behind\" "
                           "(the default) here",
                           &file, scan.immediate_line);
        return NGX_CONF_ERROR;
    }

    pmcf->gate = gate;
    pmcf->store = scan.store;
    pmcf->cors = scan.cors;

    return NGX_CONF_OK;
}


static void
ngx_http_portcullis_free_gate(void *data)
{
    portcullis_gate_free(data);
}


static ngx_int_t
ngx_http_portcullis_read_file(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *text)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "portcullis: " ngx_open_file_n " \"%V\" failed",
                           file);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "portcullis: " ngx_fd_info_n " \"%V\" failed",
                           file);
        goto failed;
    }

    size = ngx_file_size(&fi);

    if (size > NGX_HTTP_PORTCULLIS_MAX_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "portcullis: \"%V\" is larger than %d bytes",
                           file, NGX_HTTP_PORTCULLIS_MAX_FILE);
        goto failed;
    }

    text->data = ngx_pnalloc(cf->temp_pool, (size_t) size + 1);
    if (text->data == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, text->data, (size_t) size);

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "portcullis: " ngx_read_fd_n " \"%V\" failed",
                           file);
        goto failed;
    }

    text->len = n;

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return NGX_OK;

failed:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_portcullis_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_portcullis_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_portcullis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_portcullis_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_portcullis_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->file = { 0, NULL };
     *     pmcf->gate = NULL;
     *     pmcf->store = NGX_HTTP_PORTCULLIS_STORE_MEMORY;
     *     pmcf->cors = 0;
     */

    return pmcf;
}


static void *
ngx_http_portcullis_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_portcullis_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_portcullis_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->principal = NGX_CONF_UNSET_PTR;
    conf->tier = NGX_CONF_UNSET_PTR;
    conf->status_code = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_portcullis_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_portcullis_loc_conf_t *prev = parent;
    ngx_http_portcullis_loc_conf_t *conf = child;

    ngx_http_portcullis_main_conf_t  *pmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->principal, prev->principal, NULL);
    ngx_conf_merge_ptr_value(conf->tier, prev->tier, NULL);
    ngx_conf_merge_uint_value(conf->status_code, prev->status_code,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    if (conf->enable) {
        pmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_portcullis_module);

        if (pmcf->gate == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"portcullis on\" needs \"portcullis_config\" "
                               "in the http block");
            return NGX_CONF_ERROR;
        }
    }

    if (conf->metrics) {
        pmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_portcullis_module);

        if (pmcf->gate == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"portcullis_metrics\" needs "
                               "\"portcullis_config\" in the http block");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_portcullis_init(ngx_conf_t *cf)
{
    ngx_array_t                      *a;
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_portcullis_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_portcullis_module);

    if (pmcf->gate == NULL) {
        /* Loaded but not configured: stay out of every request. */
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * Handlers of a phase run last-registered first, and a dynamic module
     * registers after the built-in ones: put this one first in the array so
     * that it runs last in preaccess, after realip has set the client address
     * and after limit_conn and limit_req.
     */

    a = &cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers;

    h = ngx_array_push(a);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h = a->elts;
    ngx_memmove(&h[1], &h[0], (a->nelts - 1) * sizeof(ngx_http_handler_pt));
    h[0] = ngx_http_portcullis_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_portcullis_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_portcullis_init_module(ngx_cycle_t *cycle)
{
    ngx_core_conf_t                  *ccf;
    ngx_http_portcullis_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_portcullis_module);

    /* The shared and Redis stores count across processes. */
    if (pmcf == NULL || pmcf->gate == NULL
        || pmcf->store == NGX_HTTP_PORTCULLIS_STORE_SHARED
        || pmcf->store == NGX_HTTP_PORTCULLIS_STORE_REDIS)
    {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->master && ccf->worker_processes > 1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "portcullis: \"%V\" keeps its counters in each "
                      "process's memory: each of the %i worker processes "
                      "allows the full quota, and a reload or a respawned "
                      "worker starts from zero; use [store] "
                      "kind = \"shared\" to share them",
                      &pmcf->file, ccf->worker_processes);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "portcullis: \"%V\" keeps its counters in memory: a "
                      "reload or a restart starts them from zero; use "
                      "[store] kind = \"shared\" to keep them",
                      &pmcf->file);
    }

    return NGX_OK;
}


static void
ngx_http_portcullis_exit(ngx_cycle_t *cycle)
{
    ngx_http_portcullis_free_spare(cycle);
}


/* Metrics. */

/* How often a worker publishes its counters to the shared store's board. */
#define NGX_HTTP_PORTCULLIS_PUBLISH_MS  1000

static ngx_event_t  ngx_http_portcullis_publish_ev;


static char *
ngx_http_portcullis_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_portcullis_loc_conf_t  *plcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    /* Whether the gate exists is checked at merge, with "portcullis on". */
    plcf->metrics = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_portcullis_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_portcullis_metrics_handler(ngx_http_request_t *r)
{
    size_t                            cap, len;
    ngx_int_t                         rc;
    ngx_str_t                         err;
    ngx_buf_t                        *b;
    ngx_uint_t                        i;
    ngx_chain_t                       out;
    portcullis_result                 res;
    ngx_http_portcullis_main_conf_t  *pmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_portcullis_module);

    /* The text grows with the config, not the traffic: retry with its size. */
    b = NULL;
    len = 0;
    cap = 16384;
    res = PORTCULLIS_RESULT_INSUFFICIENT_SIZE;

    for (i = 0; i < 4 && res == PORTCULLIS_RESULT_INSUFFICIENT_SIZE; i++) {
        b = ngx_create_temp_buf(r->pool, cap);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        res = portcullis_gate_metrics(pmcf->gate,
                                      PORTCULLIS_METRICS_FORMAT_PROMETHEUS,
                                      b->pos, cap, &len);
        cap = len + 4096;
    }

    if (res != PORTCULLIS_RESULT_OK) {
        err = ngx_http_portcullis_last_error(r->pool, res);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "portcullis: metrics: %V", &err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = b->pos + len;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * With the shared store, a scrape is answered by one worker: each worker
 * publishes its counters on a timer so that even an idle one's last counts
 * reach the sums within a second.
 */
static ngx_int_t
ngx_http_portcullis_init_process(ngx_cycle_t *cycle)
{
    ngx_event_t                      *ev;
    ngx_http_portcullis_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_portcullis_module);

    if (pmcf == NULL || pmcf->gate == NULL
        || pmcf->store != NGX_HTTP_PORTCULLIS_STORE_SHARED)
    {
        return NGX_OK;
    }

    ev = &ngx_http_portcullis_publish_ev;
    ev->handler = ngx_http_portcullis_publish;
    ev->data = pmcf;
    ev->log = cycle->log;
    /* A pending publish never holds up a graceful shutdown. */
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_PORTCULLIS_PUBLISH_MS);

    return NGX_OK;
}


static void
ngx_http_portcullis_publish(ngx_event_t *ev)
{
    ngx_http_portcullis_main_conf_t  *pmcf = ev->data;

    (void) portcullis_gate_publish_metrics(pmcf->gate);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_PORTCULLIS_PUBLISH_MS);
    }
}


static void
ngx_http_portcullis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_portcullis_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_portcullis_module);

    /* A worker leaving (reload, shutdown) publishes its last counts. */
    if (pmcf != NULL && pmcf->gate != NULL
        && pmcf->store == NGX_HTTP_PORTCULLIS_STORE_SHARED)
    {
        (void) portcullis_gate_publish_metrics(pmcf->gate);
    }

    ngx_http_portcullis_exit(cycle);
}
