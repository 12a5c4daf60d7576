# %preun of the boltlink .rpm. $1: 0 when the package is being removed, 1 or more when this
# is the old version going away during an upgrade (then nothing stops: %postun restarts).
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        boltlinkctl stop || echo "boltlink: could not stop the suite cleanly; see 'boltlinkctl status'" >&2
    fi
    systemctl --no-reload disable boltlink.target >/dev/null 2>&1 || :
fi
exit 0
