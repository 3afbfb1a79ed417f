#!/usr/bin/env bash
# Install the real services the integration tests start on loopback:
#   Postfix (the MTA in front), clamd + clamdscan, spamd + spamc, rbldnsd, swaks, miltertest;
#   and chrt (util-linux), which mailscreen itself runs (pool.helperScheduling).
#
# Idempotent. When every binary is already present it does nothing (fast path) and says so.
# Otherwise, as root (or through sudo), it runs `apt-get update` once and installs the
# packages without recommends. The packages' own system-wide daemons are never started:
# a temporary /usr/sbin/policy-rc.d answering 101 ("action forbidden") is in place while
# apt runs, and the previous policy-rc.d (if any) is put back afterwards. freshclam is
# never run: the tests ship their own signature database.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*"; }

# Debian package -> a binary it provides (checked on the fast path).
PACKAGES=(
  postfix
  clamav-daemon
  clamav
  clamdscan
  spamd
  spamc
  spamassassin
  rbldnsd
  swaks
  miltertest
  netbase
  procps
  util-linux
  openssl
)
BINARIES=(
  postfix postconf postqueue postlog
  clamd clamdscan clamscan
  spamd spamc spamassassin
  rbldnsd swaks miltertest
  ps chrt openssl
)

# INSTALL_DEPS_FORCE=1 skips the fast path (to exercise the apt path on a machine that has everything).
# Daemons live in /usr/sbin, which a non-root PATH may lack.
export PATH="${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for bin in "${BINARIES[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
# Postfix's master lives outside PATH.
if command -v postconf >/dev/null 2>&1; then
  daemon_dir=$(postconf -d -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
  [[ -x "$daemon_dir/master" ]] || missing+=("$daemon_dir/master")
fi

if [[ ${#missing[@]} -eq 0 && ${INSTALL_DEPS_FORCE:-0} != 1 ]]; then
  log "all binaries present (${BINARIES[*]}); nothing to install"
  exit 0
fi
log "missing: ${missing[*]:-(none; INSTALL_DEPS_FORCE=1)}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
    log "not root: using sudo"
  else
    log "ERROR: not root and sudo is not available; cannot install ${PACKAGES[*]}" >&2
    exit 1
  fi
fi
as_root() { "${SUDO[@]}" "$@"; }

POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_CREATED=0
restore_policy() {
  if [[ $POLICY_CREATED -eq 1 ]]; then
    if [[ -n $POLICY_BACKUP ]]; then
      as_root mv -f "$POLICY_BACKUP" "$POLICY"
      log "restored the previous $POLICY"
    else
      as_root rm -f "$POLICY"
      log "removed the temporary $POLICY"
    fi
  fi
}
trap restore_policy EXIT

# Forbid invoke-rc.d from starting any service while packages are configured.
if [[ -e $POLICY ]]; then
  POLICY_BACKUP=$(as_root mktemp /tmp/policy-rc.d.mailscreen-backup.XXXXXX)
  as_root cp -p "$POLICY" "$POLICY_BACKUP"
fi
printf '#!/bin/sh\n# temporary, written by mailscreen scripts/install-deps.sh\nexit 101\n' |
  as_root tee "$POLICY" >/dev/null
as_root chmod 0755 "$POLICY"
POLICY_CREATED=1
log "wrote a temporary $POLICY (exit 101) so no package daemon starts"

# Never prompt for Postfix: install it unconfigured; the tests write their own main.cf.
printf 'postfix postfix/main_mailer_type select No configuration\n' | as_root debconf-set-selections
log "preseeded debconf: postfix/main_mailer_type = No configuration"

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

retry() {
  local n
  for n in 1 2 3; do
    if "$@"; then return 0; fi
    log "attempt $n of: $* failed"
    sleep $((n * 5))
  done
  return 1
}

log "apt-get update"
retry as_root env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -q
log "apt-get install --no-install-recommends ${PACKAGES[*]}"
retry as_root env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${PACKAGES[@]}"

still_missing=()
for bin in "${BINARIES[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || still_missing+=("$bin")
done
if [[ ${#still_missing[@]} -ne 0 ]]; then
  log "ERROR: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi

# Belt and braces: report (do not kill) any system-wide package daemon that is running anyway.
# The tests start their own instances with their own config files and never use these.
running=$(ps -eo pid=,args= | grep -E '(/usr/sbin/(clamd|spamd|rbldnsd)|freshclam -d)( |$)' | grep -v grep || true)
system_master=/var/spool/postfix/pid/master.pid
if [[ -r $system_master ]] && kill -0 "$(tr -d ' ' <"$system_master")" 2>/dev/null; then
  running+="${running:+$'\n'}system Postfix master (pid $(tr -d ' ' <"$system_master"), /var/spool/postfix)"
fi
if [[ -n $running ]]; then
  log "WARNING: system-wide daemons are running (not started by this script):"
  printf '%s\n' "$running" | sed 's/^/[install-deps]   /'
fi

log "installed: ${PACKAGES[*]}"
