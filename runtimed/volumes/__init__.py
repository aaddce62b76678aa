"""Volumes: named and anonymous volumes, their drivers and plugins, and container mounts.

- `names`: what a volume name may be, and path checks that refuse escapes.
- `driver`: the VolumeDriver interface, and loading drivers from entry points.
- `remote`: Docker volume plugins over their HTTP protocol, and their discovery.
- `store`: volume records and active mounts in the metadata database.
- `plan`: a container's mounts (volume, bind, tmpfs, image), parsed and resolved.
- `copyup`: an image's files and ownership copied into an empty volume.
- `service`: VolumeService, what the API and the container hook call.
- `hook`: the container lifecycle hook that mounts and releases volumes.
"""
