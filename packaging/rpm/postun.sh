# %postun of the boltlink .rpm. $1: 0 after removal, 1 or more after an upgrade, when the new
# version's files are in place: roll a running suite onto them one API instance at a time
# (no dropped requests), as the .deb's postinst does. rpm has no purge: /etc/boltlink is kept
# (a modified boltlink.env as .rpmsave) and so is the boltlink user, per Fedora's guidelines.
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    boltlinkctl restart --if-running ||
        echo "boltlink: the rolling restart stopped at a failure; see 'boltlinkctl status'" >&2
fi
exit 0
