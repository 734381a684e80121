# Sourced by the CI scripts whose tests start their own redis-server on 127.0.0.1: installs
# Debian's redis-server (with redis-cli) when missing, stops the system service the package
# starts, and exports PORTCULLIS_REDIS_SERVER, the binary the tests run.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "installing redis-server (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  ($SUDO service redis-server stop || $SUDO systemctl stop redis-server || true) >/dev/null 2>&1
fi
PORTCULLIS_REDIS_SERVER="$(command -v redis-server)"
export PORTCULLIS_REDIS_SERVER
