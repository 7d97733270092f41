#!/usr/bin/env bash
# Installs OpenLDAP's server and client tools (Debian's slapd and
# ldap-utils), which the Vault LDAP auth tests run: test/harness starts a
# private slapd on loopback and seeds it with ldapadd. Nothing is installed
# when both are present; otherwise apt-get installs them without asking
# anything (the package's own default database is never used by the tests).
# Without them, or without a way to install them, this fails: the tests
# would fail later, less clearly.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

have() { [[ -x /usr/sbin/slapd ]] && command -v ldapadd >/dev/null 2>&1 && command -v slapadd >/dev/null 2>&1; }
if have; then
  [[ "${1:-}" == --print-path ]] && echo /usr/sbin/slapd
  exit 0
fi
if [[ "${1:-}" == --print-path ]]; then
  echo "slapd and ldap-utils are not installed: run 'make tools' (it installs them with apt-get), or 'apt-get install -y slapd ldap-utils'" >&2
  exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "slapd and ldap-utils are not installed and there is no apt-get here: install OpenLDAP's slapd, slapadd and ldapadd (Debian: slapd ldap-utils) for the Vault LDAP auth tests" >&2
  exit 1
fi
as_root=()
if (( EUID != 0 )); then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo -n); else
    echo "slapd and ldap-utils are not installed, and installing them with apt-get needs root (no sudo here): run 'apt-get install -y slapd ldap-utils' as root" >&2
    exit 1
  fi
fi
veil::log "installing slapd and ldap-utils with apt-get (for the Vault LDAP auth tests)"
export DEBIAN_FRONTEND=noninteractive
install() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slapd ldap-utils; }
log=$(mktemp)
if ! install >"$log" 2>&1; then
  # The package lists may be missing or stale on a fresh machine.
  "${as_root[@]}" apt-get update -q >>"$log" 2>&1 || true
  if ! install >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "installing slapd and ldap-utils with apt-get failed (above): the Vault LDAP auth tests need them" >&2
    rm -f "$log"
    exit 1
  fi
fi
rm -f "$log"
have || { echo "apt-get installed slapd and ldap-utils, but /usr/sbin/slapd, slapadd or ldapadd is still missing" >&2; exit 1; }
veil::log "slapd and ldap-utils are installed"
