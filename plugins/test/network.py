# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests that validate the inventory's network values with netaddr before anything changes."""

from __future__ import annotations

try:
    import netaddr
except ImportError:  # reported when the test is used, not when Ansible loads the plugin
    netaddr = None

from ansible.errors import AnsibleFilterError


def ipv4_address(value) -> bool:
    if netaddr is None:
        raise AnsibleFilterError("colo.ft.ipv4_address needs the Python library netaddr on the controller")
    if not isinstance(value, str) or not value:
        return False
    try:
        iface = netaddr.IPNetwork(value, version=4) if "/" in value else netaddr.IPNetwork(f"{value}/32", version=4)
        address = netaddr.IPAddress(value.split("/")[0], version=4, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
    if not address.is_unicast() or address.is_loopback() or address.is_reserved():
        return False
    if iface.prefixlen < 31 and address in (iface.network, iface.broadcast):
        return False
    return True


def mac_address(value) -> bool:
    """A unicast MAC such as 52:54:00:12:34:56 (the same on both sides of a COLO pair)."""
    if netaddr is None:
        raise AnsibleFilterError("colo.ft.mac_address needs the Python library netaddr on the controller")
    try:
        mac = netaddr.EUI(value, version=48)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
    return isinstance(value, str) and value.count(":") == 5 and not (mac.words[0] & 1)


class TestModule:
    def tests(self):
        return {"ipv4_address": ipv4_address, "mac_address": mac_address}
