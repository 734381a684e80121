
/*
 * portcullis nginx module: a read-only look at a portcullis TOML file for the
 * two settings the module must know before it opens the gate: the store kind
 * and whether any policy asks for immediate durability.
 */


#ifndef _NGX_HTTP_PORTCULLIS_SCAN_H_INCLUDED_
#define _NGX_HTTP_PORTCULLIS_SCAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_PORTCULLIS_STORE_MEMORY   0   /* the default */
#define NGX_HTTP_PORTCULLIS_STORE_SLED     1
#define NGX_HTTP_PORTCULLIS_STORE_SHARED   2
#define NGX_HTTP_PORTCULLIS_STORE_OTHER    3   /* a kind this module does not know */
#define NGX_HTTP_PORTCULLIS_STORE_REDIS    4   /* decided on the thread pool: a check waits on the network */


typedef struct {
    ngx_uint_t   store;             /* NGX_HTTP_PORTCULLIS_STORE_* */
    ngx_uint_t   store_line;        /* line of [store] kind, 0 if absent */
    ngx_uint_t   immediate_line;    /* first durability = "immediate", or 0 */
    ngx_uint_t   cors;              /* a [cors] table is there */
    ngx_uint_t   error_line;        /* where the scan gave up, or 0 */
} ngx_http_portcullis_scan_t;


/*
 * Scans TOML text. Never fails: on text it cannot follow it stops and sets
 * error_line, keeping what it found so far (the gate reports the real error).
 */
#if defined(__GNUC__)
__attribute__((visibility("hidden")))
#endif
void ngx_http_portcullis_scan(u_char *text, size_t len,
    ngx_http_portcullis_scan_t *out);


#endif /* _NGX_HTTP_PORTCULLIS_SCAN_H_INCLUDED_ */
