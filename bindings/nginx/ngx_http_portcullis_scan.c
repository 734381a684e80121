
/*
 * portcullis nginx module: follows the TOML grammar just far enough to know
 * each value's dotted key path (tables, arrays of tables, dotted and quoted
 * keys, inline tables and arrays, comments, every string form), so that
 * `kind` under [store] and `durability` of a [[policy]] are told apart from
 * the same words elsewhere (a tier may be called "kind").
 *
 * The gate parses and validates the file; this scan only reads two settings.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_portcullis_scan.h"


#define NGX_HTTP_PORTCULLIS_SCAN_DEPTH  64


typedef struct {
    u_char                       *p;
    u_char                       *end;
    ngx_uint_t                    line;
    ngx_uint_t                    depth;

    u_char                        path[256];
    size_t                        plen;
    ngx_uint_t                    path_overflow;

    u_char                        str[32];
    size_t                        slen;
    ngx_uint_t                    str_overflow;

    ngx_http_portcullis_scan_t   *out;
} ngx_http_portcullis_scanner_t;


static ngx_int_t ngx_http_portcullis_scan_string(
    ngx_http_portcullis_scanner_t *s);
static ngx_int_t ngx_http_portcullis_scan_key(
    ngx_http_portcullis_scanner_t *s);
static ngx_int_t ngx_http_portcullis_scan_value(
    ngx_http_portcullis_scanner_t *s);


static void
ngx_http_portcullis_scan_ws(ngx_http_portcullis_scanner_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t')) {
        s->p++;
    }
}


static void
ngx_http_portcullis_scan_comment(ngx_http_portcullis_scanner_t *s)
{
    if (s->p < s->end && *s->p == '#') {
        while (s->p < s->end && *s->p != '\n') {
            s->p++;
        }
    }
}


/* Whitespace, newlines and comments. */

static void
ngx_http_portcullis_scan_blank(ngx_http_portcullis_scanner_t *s)
{
    for ( ;; ) {
        ngx_http_portcullis_scan_ws(s);
        ngx_http_portcullis_scan_comment(s);

        if (s->p >= s->end) {
            return;
        }

        if (*s->p == '\n') {
            s->line++;
            s->p++;
            continue;
        }

        if (*s->p == '\r') {
            s->p++;
            continue;
        }

        return;
    }
}


static void
ngx_http_portcullis_scan_put(ngx_http_portcullis_scanner_t *s, uint32_t c)
{
    if (s->slen < sizeof(s->str) && c < 0x80) {
        s->str[s->slen++] = (u_char) c;
        return;
    }

    /* Longer than any value looked for, or not ASCII: matches nothing. */
    s->str_overflow = 1;
}


static ngx_int_t
ngx_http_portcullis_scan_hex(ngx_http_portcullis_scanner_t *s, ngx_uint_t n,
    uint32_t *out)
{
    u_char    c;
    uint32_t  v;

    v = 0;

    while (n--) {
        if (s->p >= s->end) {
            return NGX_ERROR;
        }

        c = *s->p++;

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v = v * 16 + ((c | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    *out = v;

    return NGX_OK;
}


/*
 * A string of any of the four forms, its text (ASCII, up to 32 bytes) in
 * s->str. s->p is at the opening quote.
 */

static ngx_int_t
ngx_http_portcullis_scan_string(ngx_http_portcullis_scanner_t *s)
{
    u_char      q, c;
    uint32_t    v;
    ngx_uint_t  multi, extra;

    q = *s->p;
    s->slen = 0;
    s->str_overflow = 0;

    multi = (s->end - s->p >= 3 && s->p[1] == q && s->p[2] == q);

    if (multi) {
        s->p += 3;

        /* A newline right after the opening quotes is not part of it. */
        if (s->p < s->end && *s->p == '\r') {
            s->p++;
        }

        if (s->p < s->end && *s->p == '\n') {
            s->line++;
            s->p++;
        }

    } else {
        s->p++;
    }

    while (s->p < s->end) {
        c = *s->p;

        if (c == q) {
            if (!multi) {
                s->p++;
                return NGX_OK;
            }

            if (s->end - s->p >= 3 && s->p[1] == q && s->p[2] == q) {
                /* Up to two more quotes belong to the text. */
                extra = 0;

                while (extra < 2 && s->end - s->p >= 4 && s->p[3] == q) {
                    ngx_http_portcullis_scan_put(s, q);
                    s->p++;
                    extra++;
                }

                s->p += 3;
                return NGX_OK;
            }

            ngx_http_portcullis_scan_put(s, c);
            s->p++;
            continue;
        }

        if (c == '\n') {
            if (!multi) {
                return NGX_ERROR;
            }

            s->line++;
            ngx_http_portcullis_scan_put(s, c);
            s->p++;
            continue;
        }

        if (c == '\\' && q == '"') {
            s->p++;

            if (s->p >= s->end) {
                return NGX_ERROR;
            }

            c = *s->p;

            switch (c) {

            case 'u':
            case 'U':
                s->p++;

                if (ngx_http_portcullis_scan_hex(s, c == 'u' ? 4 : 8, &v)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ngx_http_portcullis_scan_put(s, v);
                continue;

            case 'b':
                v = '\b';
                break;
            case 't':
                v = '\t';
                break;
            case 'n':
                v = '\n';
                break;
            case 'f':
                v = '\f';
                break;
            case 'r':
                v = '\r';
                break;

            case ' ':
            case '\t':
            case '\r':
            case '\n':
                if (!multi) {
                    return NGX_ERROR;
                }

                /* A line-ending backslash: the break and what follows go. */
                while (s->p < s->end
                       && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r'
                           || *s->p == '\n'))
                {
                    if (*s->p == '\n') {
                        s->line++;
                    }

                    s->p++;
                }

                continue;

            default:
                v = c;
                break;
            }

            ngx_http_portcullis_scan_put(s, v);
            s->p++;
            continue;
        }

        ngx_http_portcullis_scan_put(s, c);
        s->p++;
    }

    return NGX_ERROR;
}


static void
ngx_http_portcullis_scan_segment(ngx_http_portcullis_scanner_t *s,
    u_char *data, size_t len)
{
    size_t  need;

    need = len + (s->plen ? 1 : 0);

    if (s->path_overflow || s->plen + need > sizeof(s->path)) {
        s->path_overflow = 1;
        return;
    }

    if (s->plen) {
        s->path[s->plen++] = '.';
    }

    ngx_memcpy(s->path + s->plen, data, len);
    s->plen += len;
}


/* A dotted key, appended to s->path. */

static ngx_int_t
ngx_http_portcullis_scan_key(ngx_http_portcullis_scanner_t *s)
{
    u_char  *start;

    for ( ;; ) {
        ngx_http_portcullis_scan_ws(s);

        if (s->p >= s->end) {
            return NGX_ERROR;
        }

        if (*s->p == '"' || *s->p == '\'') {
            if (ngx_http_portcullis_scan_string(s) != NGX_OK) {
                return NGX_ERROR;
            }

            if (s->str_overflow) {
                s->path_overflow = 1;

            } else {
                ngx_http_portcullis_scan_segment(s, s->str, s->slen);
            }

        } else {
            start = s->p;

            while (s->p < s->end
                   && ((*s->p >= 'a' && *s->p <= 'z')
                       || (*s->p >= 'A' && *s->p <= 'Z')
                       || (*s->p >= '0' && *s->p <= '9')
                       || *s->p == '_' || *s->p == '-'))
            {
                s->p++;
            }

            if (s->p == start) {
                return NGX_ERROR;
            }

            ngx_http_portcullis_scan_segment(s, start, s->p - start);
        }

        ngx_http_portcullis_scan_ws(s);

        if (s->p < s->end && *s->p == '.') {
            s->p++;
            continue;
        }

        return NGX_OK;
    }
}


static ngx_uint_t
ngx_http_portcullis_scan_is(ngx_http_portcullis_scanner_t *s, u_char *data,
    size_t len, const char *text)
{
    size_t  n;

    n = ngx_strlen(text);

    return len == n && ngx_memcmp(data, text, n) == 0;
}


/* A string value was read at `line`: is it one of the settings? */

static void
ngx_http_portcullis_scan_setting(ngx_http_portcullis_scanner_t *s,
    ngx_uint_t line)
{
    ngx_http_portcullis_scan_t  *out;

    if (s->path_overflow) {
        return;
    }

    out = s->out;

    if (ngx_http_portcullis_scan_is(s, s->path, s->plen, "store.kind")) {
        out->store_line = line;

        if (s->str_overflow) {
            out->store = NGX_HTTP_PORTCULLIS_STORE_OTHER;

        } else if (ngx_http_portcullis_scan_is(s, s->str, s->slen, "memory")) {
            out->store = NGX_HTTP_PORTCULLIS_STORE_MEMORY;

        } else if (ngx_http_portcullis_scan_is(s, s->str, s->slen, "sled")) {
            out->store = NGX_HTTP_PORTCULLIS_STORE_SLED;

        } else if (ngx_http_portcullis_scan_is(s, s->str, s->slen, "shared")) {
            out->store = NGX_HTTP_PORTCULLIS_STORE_SHARED;

        } else if (ngx_http_portcullis_scan_is(s, s->str, s->slen, "redis")) {
            out->store = NGX_HTTP_PORTCULLIS_STORE_REDIS;

        } else {
            out->store = NGX_HTTP_PORTCULLIS_STORE_OTHER;
        }

        return;
    }

    if (ngx_http_portcullis_scan_is(s, s->path, s->plen, "policy.durability")
        && !s->str_overflow
        && ngx_http_portcullis_scan_is(s, s->str, s->slen, "immediate")
        && out->immediate_line == 0)
    {
        out->immediate_line = line;
    }
}


/* A value of the key now in s->path. */

static ngx_int_t
ngx_http_portcullis_scan_value(ngx_http_portcullis_scanner_t *s)
{
    u_char      *start;
    size_t       base;
    ngx_int_t    rc;
    ngx_uint_t   line, overflow;

    if (s->p >= s->end || s->depth >= NGX_HTTP_PORTCULLIS_SCAN_DEPTH) {
        return NGX_ERROR;
    }

    s->depth++;
    rc = NGX_ERROR;

    switch (*s->p) {

    case '"':
    case '\'':
        line = s->line;

        if (ngx_http_portcullis_scan_string(s) != NGX_OK) {
            break;
        }

        ngx_http_portcullis_scan_setting(s, line);
        rc = NGX_OK;
        break;

    case '[':
        /* An array: its elements (inline tables too) keep the key's path. */
        s->p++;

        for ( ;; ) {
            ngx_http_portcullis_scan_blank(s);

            if (s->p < s->end && *s->p == ']') {
                s->p++;
                rc = NGX_OK;
                break;
            }

            if (ngx_http_portcullis_scan_value(s) != NGX_OK) {
                break;
            }

            ngx_http_portcullis_scan_blank(s);

            if (s->p < s->end && *s->p == ',') {
                s->p++;
                continue;
            }

            if (s->p < s->end && *s->p == ']') {
                s->p++;
                rc = NGX_OK;
            }

            break;
        }

        break;

    case '{':
        s->p++;
        base = s->plen;
        overflow = s->path_overflow;

        ngx_http_portcullis_scan_blank(s);

        if (s->p < s->end && *s->p == '}') {
            s->p++;
            rc = NGX_OK;
            break;
        }

        for ( ;; ) {
            ngx_http_portcullis_scan_blank(s);

            if (ngx_http_portcullis_scan_key(s) != NGX_OK) {
                break;
            }

            if (s->p >= s->end || *s->p != '=') {
                break;
            }

            s->p++;
            ngx_http_portcullis_scan_ws(s);

            if (ngx_http_portcullis_scan_value(s) != NGX_OK) {
                break;
            }

            s->plen = base;
            s->path_overflow = overflow;
            ngx_http_portcullis_scan_blank(s);

            if (s->p < s->end && *s->p == ',') {
                s->p++;
                continue;
            }

            if (s->p < s->end && *s->p == '}') {
                s->p++;
                rc = NGX_OK;
            }

            break;
        }

        s->plen = base;
        s->path_overflow = overflow;
        break;

    default:
        /* A number, a boolean or a date: up to the next delimiter. */
        start = s->p;

        while (s->p < s->end
               && *s->p != ',' && *s->p != ']' && *s->p != '}'
               && *s->p != '#' && *s->p != '\r' && *s->p != '\n')
        {
            s->p++;
        }

        if (s->p != start) {
            rc = NGX_OK;
        }

        break;
    }

    s->depth--;

    return rc;
}


/* A key at the top or a table header: is it the [cors] table? */

static void
ngx_http_portcullis_scan_cors(ngx_http_portcullis_scanner_t *s)
{
    if (!s->path_overflow
        && s->plen >= 4 && ngx_memcmp(s->path, "cors", 4) == 0
        && (s->plen == 4 || s->path[4] == '.'))
    {
        s->out->cors = 1;
    }
}


void
ngx_http_portcullis_scan(u_char *text, size_t len,
    ngx_http_portcullis_scan_t *out)
{
    size_t                          base;
    ngx_uint_t                      array, overflow;
    ngx_http_portcullis_scanner_t   s;

    ngx_memzero(out, sizeof(ngx_http_portcullis_scan_t));
    ngx_memzero(&s, sizeof(ngx_http_portcullis_scanner_t));

    s.p = text;
    s.end = text + len;
    s.line = 1;
    s.out = out;

    /* A UTF-8 byte order mark. */
    if (len >= 3 && text[0] == 0xef && text[1] == 0xbb && text[2] == 0xbf) {
        s.p += 3;
    }

    base = 0;
    overflow = 0;

    for ( ;; ) {
        ngx_http_portcullis_scan_blank(&s);

        if (s.p >= s.end) {
            return;
        }

        if (*s.p == '[') {
            s.p++;
            array = (s.p < s.end && *s.p == '[');

            if (array) {
                s.p++;
            }

            s.plen = 0;
            s.path_overflow = 0;

            if (ngx_http_portcullis_scan_key(&s) != NGX_OK
                || s.p >= s.end || *s.p != ']')
            {
                break;
            }

            s.p++;

            if (array) {
                if (s.p >= s.end || *s.p != ']') {
                    break;
                }

                s.p++;
            }

            base = s.plen;
            overflow = s.path_overflow;
            ngx_http_portcullis_scan_cors(&s);

        } else {
            s.plen = base;
            s.path_overflow = overflow;

            if (ngx_http_portcullis_scan_key(&s) != NGX_OK
                || s.p >= s.end || *s.p != '=')
            {
                break;
            }

            ngx_http_portcullis_scan_cors(&s);

            s.p++;
            ngx_http_portcullis_scan_ws(&s);

            if (ngx_http_portcullis_scan_value(&s) != NGX_OK) {
                break;
            }

            s.plen = base;
            s.path_overflow = overflow;
        }

        /* The rest of the line: blanks and a comment. */
        ngx_http_portcullis_scan_ws(&s);
        ngx_http_portcullis_scan_comment(&s);

        if (s.p < s.end && *s.p != '\n' && *s.p != '\r') {
            break;
        }
    }

    out->error_line = s.line;
}
