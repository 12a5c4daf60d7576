# shellcheck shell=bash
#
# The Debian 12 root filesystem the systemd-nspawn e2e scripts boot (scripts/systemd-e2e,
# scripts/fleet-e2e). Sourced after scripts/lib/services.sh (it uses its logging and apt-get
# helpers).
#
#   bl_rootfs_tar DIR    prints the path of the cached rootfs tar under DIR, building it
#                        first when missing: debootstrap (minbase plus systemd, dbus, procps,
#                        ca-certificates) and, since containers have no network, the package
#                        lists and the .debs of postgresql and redis-server (the boltlink
#                        package's Recommends) in apt's cache.
#
# Each run unpacks its own copy; delete the tar to rebuild it.

# Bump the suffix when the package lists change, so stale caches are not reused.
readonly BL_ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,procps,ca-certificates
readonly BL_ROOTFS_NAME=rootfs-bookworm-v2.tar

bl_rootfs_tar() {
    local dir=$1 mirror=${BOLTLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    local tar=$dir/$BL_ROOTFS_NAME build=$dir/rootfs.build log=$dir/debootstrap.log
    if [[ -f $tar ]]; then
        printf '%s\n' "$tar"
        return 0
    fi
    mkdir -p "$dir"
    if ! command -v debootstrap >/dev/null 2>&1; then
        _bl_log "installing debootstrap"
        _bl_apt update && _bl_apt install --no-install-recommends debootstrap || return 1
    fi
    _bl_log "building the Debian 12 rootfs with debootstrap (once; cached in $tar)"
    rm -rf --one-file-system "$build"
    if ! debootstrap --variant=minbase --include="$BL_ROOTFS_PACKAGES" bookworm "$build" "$mirror" \
        >"$log" 2>&1; then
        _bl_err "debootstrap failed (log: $log)"
        _bl_show_log "$log"
        return 1
    fi
    local args
    for args in "update" "install --download-only postgresql redis-server"; do
        # shellcheck disable=SC2086  # $args is a fixed list of words
        if ! systemd-nspawn -q -D "$build" --register=no --keep-unit --pipe \
            env DEBIAN_FRONTEND=noninteractive apt-get -q -y $args </dev/null >>"$log" 2>&1; then
            _bl_err "apt-get $args in the new rootfs failed (log: $log)"
            _bl_show_log "$log"
            return 1
        fi
    done
    tar --numeric-owner -C "$build" -cf "$tar.tmp" . || return 1
    mv -f "$tar.tmp" "$tar"
    rm -rf --one-file-system "$build"
    printf '%s\n' "$tar"
}
