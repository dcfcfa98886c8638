#!/usr/bin/env bash
# Installs everything protocol-tests needs on a fresh Debian 12 (bookworm) machine.
# Run as root. Idempotent: running it again only re-checks.
#
#   gearman-job-server      gearmand 1.1.20, the reference server the tests start
#   gearman-tools           the `gearman` CLI (client and worker) and `gearadmin`
#   php-cli, php-gearman    PHP with pecl/gearman 2.1.0 (GearmanClient / GearmanWorker)
#   libgearman-client-perl  Gearman::Client, Gearman::Worker, Gearman::Taskset (2.004.015)
#   python3, python3-pip    for the OpenStack `gear` library (pinned below)
#   util-linux / bsdextrautils  `rev`, used by clients/cli_worker_cmd.sh
#
# The gearman-job-server package may start a system gearmand on 127.0.0.1:4730 (where
# an init system runs). The tests never use it: each test starts its own gearmand in
# the foreground on a random free port and kills it afterwards.
set -euo pipefail

GEAR_VERSION=0.16.0

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
if ! command -v rev >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends bsdextrautils
fi

# gear for whatever `python3` is first on PATH (the tests run `python3`).
if python3 -c "import sys, gear, importlib.metadata as m; sys.exit(m.version('gear') != '${GEAR_VERSION}')" 2>/dev/null; then
    echo "gear ${GEAR_VERSION} already installed"
else
    pip_args=(install "gear==${GEAR_VERSION}")
    # Debian's python3 is "externally managed" (PEP 668); pip refuses to install into
    # it unless told to. gear is not packaged in Debian.
    if python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"; then
        pip_args+=(--break-system-packages)
    fi
    python3 -m pip "${pip_args[@]}"
fi

# Check that everything the tests call is there.
missing=0
for cmd in gearmand gearman gearadmin php perl python3 sh rev; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "missing command: $cmd" >&2
        missing=1
    fi
done
php -r 'exit(extension_loaded("gearman") ? 0 : 1);' || { echo "php gearman extension not loaded" >&2; missing=1; }
perl -MGearman::Client -MGearman::Worker -MGearman::Taskset -e 1 || { echo "perl Gearman modules missing" >&2; missing=1; }
python3 -c 'import gear' || { echo "python gear missing" >&2; missing=1; }
if [ "$missing" -ne 0 ]; then
    exit 1
fi
echo "protocol-tests dependencies OK: $(gearmand --version 2>&1 | head -n1); php-gearman $(php -r 'echo phpversion("gearman");'); gear $(python3 -c 'import importlib.metadata as m; print(m.version("gear"))')"
