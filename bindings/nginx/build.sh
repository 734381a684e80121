#!/usr/bin/env bash
# Builds ngx_http_portcullis_module.so for Debian's nginx, in one command, and prints its path
# as the last line of output (everything else goes to stderr).
#
# - Installs nginx and nginx-dev with apt-get when missing (nginx-dev ships nginx's configured
#   source in /usr/share/nginx/src, with the flags Debian built nginx with in conf_flags).
# - Builds the portcullis static library (cargo build --release -p portcullis --lib).
# - Configures a copy of that source with Debian's flags and --add-dynamic-module, and runs
#   `make modules`: the module is binary-compatible with /usr/sbin/nginx.
# - Checks that /usr/sbin/nginx loads it.
#
# Environment: PORTCULLIS_NGINX_BUILD (build folder, default bindings/nginx/build),
# CARGO_TARGET_DIR (as cargo reads it).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${PORTCULLIS_NGINX_BUILD:-$here/build}"
ngx_src=/usr/share/nginx/src

log() { echo "nginx-module: $*" >&2; }

missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -f "$ngx_src/conf_flags" ] || missing+=(nginx-dev)
{ command -v make && command -v cc && [ -f /usr/include/stdio.h ]; } >/dev/null || missing+=(build-essential)
command -v dpkg-buildflags >/dev/null || missing+=(dpkg-dev)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt-get)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

nginx_version="$(dpkg-query -W -f='${Version}' nginx 2>/dev/null || true)"
dev_version="$(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || true)"
if [ -n "$nginx_version" ] && [ "$nginx_version" != "$dev_version" ]; then
  log "nginx is $nginx_version but nginx-dev is $dev_version: a module built from this source" \
    "would not load; install matching versions (apt-get install nginx nginx-dev)"
  exit 1
fi

log "building the portcullis static library"
(cd "$root" && cargo build --release -p portcullis --lib) >&2
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export PORTCULLIS_LIB="$target_dir/release/libportcullis.a"
export PORTCULLIS_INC="$root/include"
[ -f "$PORTCULLIS_LIB" ] || { log "no $PORTCULLIS_LIB after the build"; exit 1; }

cflags="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS)"
ldflags="$(dpkg-buildflags --get LDFLAGS) -fPIC"

# Configure once per nginx version, flags and module config; later builds only compile.
src="$build/nginx-src"
stamp="$(printf '%s\n' "$dev_version" "$cflags" "$ldflags" "$PORTCULLIS_LIB" "$here" \
  "$(cat "$ngx_src/conf_flags" "$here/config")" | sha256sum | cut -c1-16)"
if [ ! -f "$src/objs/Makefile" ] || [ "$(cat "$build/.configured" 2>/dev/null)" != "$stamp" ]; then
  log "configuring a copy of $ngx_src (nginx $dev_version) with Debian's flags"
  rm -rf "$src"
  mkdir -p "$build"
  cp -a "$ngx_src" "$src"
  (
    cd "$src"
    # shellcheck disable=SC1091
    . ./conf_flags
    ./configure --with-cc-opt="$cflags" --with-ld-opt="$ldflags" "${NGX_CONF_FLAGS[@]}" \
      --add-dynamic-module="$here"
  ) >"$build/configure.log" 2>&1 || {
    tail -30 "$build/configure.log" >&2
    log "configure failed (full log: $build/configure.log)"
    exit 1
  }
  echo "$stamp" >"$build/.configured"
fi

log "make modules"
# The module links the static library: relink whenever it may have changed.
rm -f "$src/objs/ngx_http_portcullis_module.so"
make -C "$src" -f objs/Makefile modules >&2
cp "$src/objs/ngx_http_portcullis_module.so" "$build/ngx_http_portcullis_module.so"
module="$build/ngx_http_portcullis_module.so"

# /usr/sbin/nginx must load it ("is not binary compatible" otherwise).
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
mkdir -p "$check/logs"
printf 'load_module %s;\nevents {}\n' "$module" >"$check/nginx.conf"
if ! /usr/sbin/nginx -p "$check" -c "$check/nginx.conf" -e stderr -g "pid $check/nginx.pid;" -t -q >&2
then
  log "/usr/sbin/nginx does not load $module"
  exit 1
fi
log "built and loadable by $(/usr/sbin/nginx -v 2>&1)"

echo "$module"
