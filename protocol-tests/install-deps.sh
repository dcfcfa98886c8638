#!/usr/bin/env bash
# Installs everything protocol-tests needs on a fresh Debian 12 (bookworm) machine.
# Run as root. Idempotent: running it again only re-checks.
#
#   gearman-job-server      gearmand 1.1.20, the reference server the tests start
#   gearman-tools           the `gearman` CLI (client and worker) and `gearadmin`
#   php-cli, php-gearman    PHP with pecl/gearman 2.1.0 (GearmanClient / GearmanWorker)
#   libgearman-client-perl  Gearman::Client, Gearman::Worker, Gearman::Taskset (2.004.015)
#   python3, python3-pip    for the OpenStack `gear` library and `pygearman` (pinned below)
#   nodejs, npm             for the npm `gearman` package (node-gearman), installed with
#                           `npm ci` into clients/node/ from its package-lock.json
#   util-linux / bsdextrautils  `rev`, used by clients/cli_worker_cmd.sh
#
# The gearman-job-server package may start a system gearmand on 127.0.0.1:4730 (where
# an init system runs). The tests never use it: each test starts its own gearmand in
# the foreground on a random free port and kills it afterwards.
set -euo pipefail

GEAR_VERSION=0.16.0
PYGEARMAN_VERSION=0.2.6
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    gearman-job-server gearman-tools \
    php-cli php-gearman \
    libgearman-client-perl \
    python3 python3-pip \
    util-linux
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends nodejs npm
fi
if ! command -v rev >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends bsdextrautils
fi
# PostgreSQL and Redis servers for crates/gearbox-server/tests/store_backends.rs. The
# tests start private instances of their own on free loopback ports (as root, postgres
# runs as the `postgres` user the package creates) and never use a system service the
# packages may start.
apt-get install -y --no-install-recommends postgresql redis-server

# gear and pygearman for whatever `python3` is first on PATH (the tests run `python3`).
# pygearman (a Python 3 fork of python-gearman) installs the module `gearman`.
pip_install() { # DIST VERSION
    if python3 -c "import sys, importlib.metadata as m; sys.exit(m.version('$1') != '$2')" 2>/dev/null; then
        echo "$1 $2 already installed"
        return
    fi
    local pip_args=(install "$1==$2")
    # Debian's python3 is "externally managed" (PEP 668); pip refuses to install into
    # it unless told to. Neither package is packaged in Debian.
    if python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"; then
        pip_args+=(--break-system-packages)
    fi
    python3 -m pip "${pip_args[@]}"
}
pip_install gear "${GEAR_VERSION}"
pip_install pygearman "${PYGEARMAN_VERSION}"

# node-gearman (npm `gearman`, version pinned in clients/node/package-lock.json).
# `npm ci` always reinstalls clients/node/node_modules exactly from the lock file.
npm ci --prefix "${HERE}/clients/node" --no-audit --no-fund

# Check that everything the tests call is there.
missing=0
for cmd in gearmand gearman gearadmin php perl python3 node npm sh rev; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "missing command: $cmd" >&2
        missing=1
    fi
done
php -r 'exit(extension_loaded("gearman") ? 0 : 1);' || { echo "php gearman extension not loaded" >&2; missing=1; }
perl -MGearman::Client -MGearman::Worker -MGearman::Taskset -e 1 || { echo "perl Gearman modules missing" >&2; missing=1; }
python3 -c 'import gear' || { echo "python gear missing" >&2; missing=1; }
python3 -c 'import gearman; gearman.GearmanClient, gearman.GearmanWorker' || { echo "python pygearman missing" >&2; missing=1; }
(cd "${HERE}/clients/node" && node -e 'require("gearman")') || { echo "npm gearman missing in clients/node" >&2; missing=1; }
command -v redis-server >/dev/null 2>&1 || { echo "missing command: redis-server" >&2; missing=1; }
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { echo "missing: PostgreSQL server (initdb)" >&2; missing=1; }
if [ "$missing" -ne 0 ]; then
    exit 1
fi
echo "protocol-tests dependencies OK: $(gearmand --version 2>&1 | head -n1); php-gearman $(php -r 'echo phpversion("gearman");'); gear $(python3 -c 'import importlib.metadata as m; print(m.version("gear"))'); pygearman $(python3 -c 'import importlib.metadata as m; print(m.version("pygearman"))'); node $(node --version), npm gearman $(node -p 'require("'"${HERE}"'/clients/node/node_modules/gearman/package.json").version')"
