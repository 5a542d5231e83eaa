# Shared settings for the test-VM scripts (sourced, not run).
# The cache lives outside the checkout; every artefact is keyed by a hash of what it is built
# from, so a changed package list or script rebuilds it and an unchanged one is reused.
: "${PRIMER_VM_CACHE:=/var/cache/primer-test}"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# Base packages of the guest (see shared/notes/guest-vm.md for why each is needed).
BASE_PACKAGES="systemd,systemd-sysv,udev,kmod,iproute2,dbus,openssh-server"

# Extra packages per variant: base (primer, systemd-networkd), cloudinit (Debian's cloud-init for
# comparison), ifupdown and nm (the other network backends primer renders for), users (sudo, for
# primer's default user and its sudo rule). ifupdown needs
# ifenslave for bonds, vlan for VLANs and procps: it sets accept_ra/autoconf with sysctl and
# silently skips that when sysctl is missing.
variant_packages() {
    case "$1" in
        base) echo "" ;;
        cloudinit) echo ",cloud-init" ;;
        ifupdown) echo ",ifupdown,isc-dhcp-client,ifenslave,vlan,procps" ;;
        nm) echo ",network-manager" ;;
        users) echo ",sudo" ;;
        *) echo "unknown variant $1" >&2; return 1 ;;
    esac
}

hash_of() { printf '%s' "$*" | sha256sum | cut -c1-16; }
