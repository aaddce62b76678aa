"""Rootless networking: the rootless namespace, bridges, IPAM, DNS and published ports."""
