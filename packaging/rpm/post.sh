# %post of the boltlink .rpm (packaging/rpm/; the .deb's postinst has the same intent).
# $1: 1 on first install, 2 or more on upgrade. cargo-generate-rpm has no systemd macros;
# `systemctl --no-reload preset` is what %systemd_post expands to.
systemd-sysusers boltlink.conf || :
for f in /etc/boltlink/boltlink.env /etc/boltlink/setup.env; do
    if [ -f "$f" ]; then
        chgrp boltlink "$f" && chmod 0640 "$f" || :
    fi
done
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Enables boltlink.target unless a preset says otherwise (the unit's [Install] section).
    systemctl --no-reload preset boltlink.target >/dev/null 2>&1 || :
fi
if ! boltlinkctl setup --if-unconfigured; then
    echo "boltlink: no database is configured yet. Once PostgreSQL and Redis run on this" >&2
    echo "boltlink: machine, run 'boltlinkctl setup'; for a database elsewhere, set" >&2
    echo "boltlink: DATABASE_URL in /etc/boltlink/boltlink.env. Then: systemctl start boltlink.target" >&2
fi
exit 0
