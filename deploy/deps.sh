# Sourced by demo.sh, test.sh and bench/run.sh: installs the Debian 12 packages lookupgate needs
# when any is missing. Works as root or through sudo; does nothing when all are present.

LOOKUPGATE_PACKAGES="build-essential cmake pkg-config libevent-dev libssl-dev libhiredis-dev
libjansson-dev libhttp-parser-dev redis-server python3 openssl curl tzdata"

lg_install_packages() {
    local missing="" p
    for p in $LOOKUPGATE_PACKAGES "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing="$missing $p"
        fi
    done
    [ -z "$missing" ] && return 0
    echo "Installing missing packages:$missing"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install:$missing" >&2; return 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}
