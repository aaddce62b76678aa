"""Test infrastructure: a real registry and images built from busybox-static."""
