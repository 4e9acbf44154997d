#!/usr/bin/env bash
# fresh_root_check.sh: the README's two commands, as a newcomer runs them, in a
# fresh Debian 12 root made by debootstrap: nothing this machine installed by
# hand is there, so a missing install step fails here before it fails for a user.
#
#   sudo bash scripts/fresh_root_check.sh           # setup.sh, then test.sh (all stages)
#   sudo bash scripts/fresh_root_check.sh --quick   # setup.sh, then test.sh's release stage only
#
# Needs root (debootstrap, chroot, mounts) and Debian's package mirror; takes
# about 30 minutes on 2 cores (--quick: about 15). The root is made anew in
# $LS_FRESH_ROOT (default /var/tmp/layerskip-fresh-root) from a clone of the
# committed HEAD (uncommitted changes are not in it) and removed at the end
# unless LS_KEEP_ROOT=1. The last lines are test.sh's, then one verdict line.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, chroot and mounts need it)" >&2; exit 2; }
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
mirror=${LS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=${LS_FRESH_ROOT:-/var/tmp/layerskip-fresh-root}

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R -l "${mounted[$i]}" 2>/dev/null || true; done
  # and what the tests mounted inside (ip netns add bind-mounts /run/netns), deepest first
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ "${LS_KEEP_ROOT:-0}" != 1 ] && [ -d "$root" ]; then rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

if [ -e "$root" ]; then
  # a root left by an interrupted run: nothing may still be mounted under it
  if grep -q " $root[/ ]" /proc/mounts; then
    echo "error: $root has mounts under it (an earlier run still going?)" >&2; exit 1; fi
  rm -rf --one-file-system "$root"
fi
echo "== debootstrap bookworm (minbase) into $root"
t0=$(date +%s)
debootstrap --variant=minbase bookworm "$root" "$mirror" >"/tmp/layerskip-debootstrap.log" 2>&1 || {
  tail -20 /tmp/layerskip-debootstrap.log >&2; exit 1; }
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The network this machine sits behind, not the project: local CA certificates
# (a TLS-inspecting egress proxy) and pip's settings go in as they are here, so
# a machine of this network is what the root imitates. ca-certificates, which
# setup.sh installs, adds the local certificates to the bundle.
if [ -d /usr/local/share/ca-certificates ]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
mkdir -p "$root/etc/ssl/certs"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
# "/" is a mount point on a real machine, and `ip netns exec` (the cluster
# tests) needs that: it makes / a slave mount in its own mount namespace
mount --bind "$root" "$root"; mounted+=("$root")
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
mount -t sysfs sys "$root/sys"; mounted+=("$root/sys")
# the host's /dev with its pts and shm (OpenMPI's shared memory), kept from
# propagating back
mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; mounted+=("$root/dev")
git clone -q --no-hardlinks "$repo" "$root/root/layerskip"
echo "== cloned $(git -C "$repo" rev-parse --short HEAD) into the root ($(( $(date +%s) - t0 )) s so far)"

test_env=""
[ $quick = 1 ] && test_env="LS_SKIP_ASAN=1 LS_SKIP_FUZZ=1"
rc=0
bundle=/etc/ssl/certs/ca-certificates.crt
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
  SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle NODE_EXTRA_CA_CERTS=$bundle \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c "cd /root/layerskip && bash scripts/setup.sh && $test_env bash scripts/test.sh" || rc=$?
echo "== fresh Debian 12 root: setup.sh + test.sh exited $rc after $(( $(date +%s) - t0 )) s"
exit $rc
