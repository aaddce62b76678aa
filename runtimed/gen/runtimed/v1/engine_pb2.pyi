from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ContainerRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Bind(_message.Message):
    __slots__ = ("source", "target", "readonly", "propagation")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READONLY_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    readonly: bool
    propagation: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., readonly: _Optional[bool] = ..., propagation: _Optional[str] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("name", "max_retries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_retries: int
    def __init__(self, name: _Optional[str] = ..., max_retries: _Optional[int] = ...) -> None: ...

class CreateContainerRequest(_message.Message):
    __slots__ = ("image", "name", "entrypoint", "has_entrypoint", "cmd", "has_cmd", "env", "working_dir", "user", "hostname", "labels", "tty", "stdin_open", "stdin_once", "read_only", "restart_policy", "stop_signal", "stop_timeout", "binds", "auto_remove", "pull_if_missing", "platform", "log_driver", "log_opts", "mounts", "volumes_from", "network", "network_aliases", "ip", "links", "dns", "dns_search", "dns_options", "extra_hosts", "mac_address", "ports", "publish_all", "pid_mode", "resources", "healthcheck")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LogOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    HAS_ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    HAS_CMD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_OPEN_FIELD_NUMBER: _ClassVar[int]
    STDIN_ONCE_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    BINDS_FIELD_NUMBER: _ClassVar[int]
    AUTO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    PULL_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    LOG_DRIVER_FIELD_NUMBER: _ClassVar[int]
    LOG_OPTS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FROM_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ALIASES_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    DNS_SEARCH_FIELD_NUMBER: _ClassVar[int]
    DNS_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    MAC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ALL_FIELD_NUMBER: _ClassVar[int]
    PID_MODE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    image: str
    name: str
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    has_entrypoint: bool
    cmd: _containers.RepeatedScalarFieldContainer[str]
    has_cmd: bool
    env: _containers.RepeatedScalarFieldContainer[str]
    working_dir: str
    user: str
    hostname: str
    labels: _containers.ScalarMap[str, str]
    tty: bool
    stdin_open: bool
    stdin_once: bool
    read_only: bool
    restart_policy: RestartPolicy
    stop_signal: str
    stop_timeout: int
    binds: _containers.RepeatedCompositeFieldContainer[Bind]
    auto_remove: bool
    pull_if_missing: bool
    platform: str
    log_driver: str
    log_opts: _containers.ScalarMap[str, str]
    mounts: _containers.RepeatedCompositeFieldContainer[MountSpec]
    volumes_from: _containers.RepeatedScalarFieldContainer[str]
    network: str
    network_aliases: _containers.RepeatedScalarFieldContainer[str]
    ip: str
    links: _containers.RepeatedScalarFieldContainer[str]
    dns: _containers.RepeatedScalarFieldContainer[str]
    dns_search: _containers.RepeatedScalarFieldContainer[str]
    dns_options: _containers.RepeatedScalarFieldContainer[str]
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    mac_address: str
    ports: _containers.RepeatedCompositeFieldContainer[PortBinding]
    publish_all: bool
    pid_mode: str
    resources: Resources
    healthcheck: HealthConfig
    def __init__(self, image: _Optional[str] = ..., name: _Optional[str] = ..., entrypoint: _Optional[_Iterable[str]] = ..., has_entrypoint: _Optional[bool] = ..., cmd: _Optional[_Iterable[str]] = ..., has_cmd: _Optional[bool] = ..., env: _Optional[_Iterable[str]] = ..., working_dir: _Optional[str] = ..., user: _Optional[str] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., tty: _Optional[bool] = ..., stdin_open: _Optional[bool] = ..., stdin_once: _Optional[bool] = ..., read_only: _Optional[bool] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., stop_signal: _Optional[str] = ..., stop_timeout: _Optional[int] = ..., binds: _Optional[_Iterable[_Union[Bind, _Mapping]]] = ..., auto_remove: _Optional[bool] = ..., pull_if_missing: _Optional[bool] = ..., platform: _Optional[str] = ..., log_driver: _Optional[str] = ..., log_opts: _Optional[_Mapping[str, str]] = ..., mounts: _Optional[_Iterable[_Union[MountSpec, _Mapping]]] = ..., volumes_from: _Optional[_Iterable[str]] = ..., network: _Optional[str] = ..., network_aliases: _Optional[_Iterable[str]] = ..., ip: _Optional[str] = ..., links: _Optional[_Iterable[str]] = ..., dns: _Optional[_Iterable[str]] = ..., dns_search: _Optional[_Iterable[str]] = ..., dns_options: _Optional[_Iterable[str]] = ..., extra_hosts: _Optional[_Iterable[str]] = ..., mac_address: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortBinding, _Mapping]]] = ..., publish_all: _Optional[bool] = ..., pid_mode: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., healthcheck: _Optional[_Union[HealthConfig, _Mapping]] = ...) -> None: ...

class HealthConfig(_message.Message):
    __slots__ = ("test", "interval", "timeout", "start_period", "start_interval", "retries")
    TEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    test: _containers.RepeatedScalarFieldContainer[str]
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int
    def __init__(self, test: _Optional[_Iterable[str]] = ..., interval: _Optional[int] = ..., timeout: _Optional[int] = ..., start_period: _Optional[int] = ..., start_interval: _Optional[int] = ..., retries: _Optional[int] = ...) -> None: ...

class MountSpec(_message.Message):
    __slots__ = ("type", "source", "target", "readonly", "volume_driver", "volume_opts", "volume_labels", "no_copy", "bind_propagation", "tmpfs_size", "tmpfs_mode", "tmpfs_options")
    class VolumeOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VolumeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READONLY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_DRIVER_FIELD_NUMBER: _ClassVar[int]
    VOLUME_OPTS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_LABELS_FIELD_NUMBER: _ClassVar[int]
    NO_COPY_FIELD_NUMBER: _ClassVar[int]
    BIND_PROPAGATION_FIELD_NUMBER: _ClassVar[int]
    TMPFS_SIZE_FIELD_NUMBER: _ClassVar[int]
    TMPFS_MODE_FIELD_NUMBER: _ClassVar[int]
    TMPFS_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    type: str
    source: str
    target: str
    readonly: bool
    volume_driver: str
    volume_opts: _containers.ScalarMap[str, str]
    volume_labels: _containers.ScalarMap[str, str]
    no_copy: bool
    bind_propagation: str
    tmpfs_size: int
    tmpfs_mode: int
    tmpfs_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., readonly: _Optional[bool] = ..., volume_driver: _Optional[str] = ..., volume_opts: _Optional[_Mapping[str, str]] = ..., volume_labels: _Optional[_Mapping[str, str]] = ..., no_copy: _Optional[bool] = ..., bind_propagation: _Optional[str] = ..., tmpfs_size: _Optional[int] = ..., tmpfs_mode: _Optional[int] = ..., tmpfs_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PortBinding(_message.Message):
    __slots__ = ("host_ip", "host_port", "container_port", "protocol", "host_port_end")
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_END_FIELD_NUMBER: _ClassVar[int]
    host_ip: str
    host_port: int
    container_port: int
    protocol: str
    host_port_end: int
    def __init__(self, host_ip: _Optional[str] = ..., host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ..., host_port_end: _Optional[int] = ...) -> None: ...

class ContainerPortsResponse(_message.Message):
    __slots__ = ("ports",)
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[PortBinding]
    def __init__(self, ports: _Optional[_Iterable[_Union[PortBinding, _Mapping]]] = ...) -> None: ...

class VolumeRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateVolumeRequest(_message.Message):
    __slots__ = ("name", "driver", "driver_opts", "labels")
    class DriverOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_OPTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    driver_opts: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., driver_opts: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Volume(_message.Message):
    __slots__ = ("name", "driver", "mountpoint", "labels", "options", "created_at", "scope", "used_by", "status")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    USED_BY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    mountpoint: str
    labels: _containers.ScalarMap[str, str]
    options: _containers.ScalarMap[str, str]
    created_at: str
    scope: str
    used_by: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., mountpoint: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., options: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[str] = ..., scope: _Optional[str] = ..., used_by: _Optional[_Iterable[str]] = ..., status: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListVolumesRequest(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class ListVolumesResponse(_message.Message):
    __slots__ = ("volumes", "warnings")
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[Volume]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, volumes: _Optional[_Iterable[_Union[Volume, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveVolumeRequest(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class PruneVolumesRequest(_message.Message):
    __slots__ = ("filters", "all")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    all: bool
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., all: _Optional[bool] = ...) -> None: ...

class PruneVolumesResponse(_message.Message):
    __slots__ = ("deleted", "space_reclaimed")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., space_reclaimed: _Optional[int] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Plugin(_message.Message):
    __slots__ = ("name", "kind", "address", "enabled", "state", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    address: str
    enabled: bool
    state: str
    error: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., address: _Optional[str] = ..., enabled: _Optional[bool] = ..., state: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    def __init__(self, plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ...) -> None: ...

class NetworkRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class IpamConfig(_message.Message):
    __slots__ = ("subnet", "ip_range", "gateway")
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    IP_RANGE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    subnet: str
    ip_range: str
    gateway: str
    def __init__(self, subnet: _Optional[str] = ..., ip_range: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("name", "driver", "ipam", "internal", "labels", "options", "ipv6")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    IPAM_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    ipam: _containers.RepeatedCompositeFieldContainer[IpamConfig]
    internal: bool
    labels: _containers.ScalarMap[str, str]
    options: _containers.ScalarMap[str, str]
    ipv6: bool
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., ipam: _Optional[_Iterable[_Union[IpamConfig, _Mapping]]] = ..., internal: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., options: _Optional[_Mapping[str, str]] = ..., ipv6: _Optional[bool] = ...) -> None: ...

class NetworkEndpoint(_message.Message):
    __slots__ = ("container_id", "name", "ipv4_address", "mac_address", "aliases")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPV4_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    name: str
    ipv4_address: str
    mac_address: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, container_id: _Optional[str] = ..., name: _Optional[str] = ..., ipv4_address: _Optional[str] = ..., mac_address: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("id", "name", "driver", "ipam", "internal", "labels", "options", "created_at", "containers", "interface", "dns_enabled")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    IPAM_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    DNS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    driver: str
    ipam: _containers.RepeatedCompositeFieldContainer[IpamConfig]
    internal: bool
    labels: _containers.ScalarMap[str, str]
    options: _containers.ScalarMap[str, str]
    created_at: str
    containers: _containers.RepeatedCompositeFieldContainer[NetworkEndpoint]
    interface: str
    dns_enabled: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., driver: _Optional[str] = ..., ipam: _Optional[_Iterable[_Union[IpamConfig, _Mapping]]] = ..., internal: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., options: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[NetworkEndpoint, _Mapping]]] = ..., interface: _Optional[str] = ..., dns_enabled: _Optional[bool] = ...) -> None: ...

class ListNetworksRequest(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[Network]
    def __init__(self, networks: _Optional[_Iterable[_Union[Network, _Mapping]]] = ...) -> None: ...

class PruneNetworksRequest(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class PruneNetworksResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ...) -> None: ...

class ConnectNetworkRequest(_message.Message):
    __slots__ = ("network", "container", "aliases", "ip")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    network: str
    container: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    ip: str
    def __init__(self, network: _Optional[str] = ..., container: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., ip: _Optional[str] = ...) -> None: ...

class DisconnectNetworkRequest(_message.Message):
    __slots__ = ("network", "container", "force")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    network: str
    container: str
    force: bool
    def __init__(self, network: _Optional[str] = ..., container: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class CreateContainerResponse(_message.Message):
    __slots__ = ("id", "name", "warnings")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StopContainerRequest(_message.Message):
    __slots__ = ("id", "timeout", "signal")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout: int
    signal: str
    def __init__(self, id: _Optional[str] = ..., timeout: _Optional[int] = ..., signal: _Optional[str] = ...) -> None: ...

class KillContainerRequest(_message.Message):
    __slots__ = ("id", "signal")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: str
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[str] = ...) -> None: ...

class WaitContainerRequest(_message.Message):
    __slots__ = ("id", "condition")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    condition: str
    def __init__(self, id: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class WaitContainerResponse(_message.Message):
    __slots__ = ("exit_code", "error")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    error: str
    def __init__(self, exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class RenameContainerRequest(_message.Message):
    __slots__ = ("id", "new_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    new_name: str
    def __init__(self, id: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class RemoveContainerRequest(_message.Message):
    __slots__ = ("id", "force", "volumes")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    id: str
    force: bool
    volumes: bool
    def __init__(self, id: _Optional[str] = ..., force: _Optional[bool] = ..., volumes: _Optional[bool] = ...) -> None: ...

class PruneContainersRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PruneContainersResponse(_message.Message):
    __slots__ = ("deleted", "space_reclaimed")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., space_reclaimed: _Optional[int] = ...) -> None: ...

class ListContainersRequest(_message.Message):
    __slots__ = ("all", "filters", "last")
    ALL_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    all: bool
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    last: int
    def __init__(self, all: _Optional[bool] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., last: _Optional[int] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("since", "until", "filters")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    since: str
    until: str
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, since: _Optional[str] = ..., until: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class EventActor(_message.Message):
    __slots__ = ("id", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "action", "actor", "scope", "time_nano")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TIME_NANO_FIELD_NUMBER: _ClassVar[int]
    type: str
    action: str
    actor: EventActor
    scope: str
    time_nano: int
    def __init__(self, type: _Optional[str] = ..., action: _Optional[str] = ..., actor: _Optional[_Union[EventActor, _Mapping]] = ..., scope: _Optional[str] = ..., time_nano: _Optional[int] = ...) -> None: ...

class ContainerSummary(_message.Message):
    __slots__ = ("id", "name", "image", "image_id", "command", "created", "state", "status", "ports", "labels", "exit_code", "size_rw")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_RW_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    image: str
    image_id: str
    command: str
    created: int
    state: str
    status: str
    ports: str
    labels: _containers.ScalarMap[str, str]
    exit_code: int
    size_rw: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., image: _Optional[str] = ..., image_id: _Optional[str] = ..., command: _Optional[str] = ..., created: _Optional[int] = ..., state: _Optional[str] = ..., status: _Optional[str] = ..., ports: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., exit_code: _Optional[int] = ..., size_rw: _Optional[int] = ...) -> None: ...

class ListContainersResponse(_message.Message):
    __slots__ = ("containers",)
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[ContainerSummary]
    def __init__(self, containers: _Optional[_Iterable[_Union[ContainerSummary, _Mapping]]] = ...) -> None: ...

class InspectContainerResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ContainerLogsRequest(_message.Message):
    __slots__ = ("id", "follow", "tail", "since", "until", "timestamps", "stdout", "stderr")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    id: str
    follow: bool
    tail: int
    since: str
    until: str
    timestamps: bool
    stdout: bool
    stderr: bool
    def __init__(self, id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., timestamps: _Optional[bool] = ..., stdout: _Optional[bool] = ..., stderr: _Optional[bool] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("stream", "data", "time_nano")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIME_NANO_FIELD_NUMBER: _ClassVar[int]
    stream: str
    data: bytes
    time_nano: int
    def __init__(self, stream: _Optional[str] = ..., data: _Optional[bytes] = ..., time_nano: _Optional[int] = ...) -> None: ...

class TopContainerRequest(_message.Message):
    __slots__ = ("id", "ps_args")
    ID_FIELD_NUMBER: _ClassVar[int]
    PS_ARGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    ps_args: str
    def __init__(self, id: _Optional[str] = ..., ps_args: _Optional[str] = ...) -> None: ...

class TopContainerResponse(_message.Message):
    __slots__ = ("titles", "processes")
    TITLES_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    titles: _containers.RepeatedScalarFieldContainer[str]
    processes: _containers.RepeatedCompositeFieldContainer[TopRow]
    def __init__(self, titles: _Optional[_Iterable[str]] = ..., processes: _Optional[_Iterable[_Union[TopRow, _Mapping]]] = ...) -> None: ...

class TopRow(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fields: _Optional[_Iterable[str]] = ...) -> None: ...

class AttachOptions(_message.Message):
    __slots__ = ("id", "stdin", "stdout", "stderr", "detach_keys", "logs")
    ID_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    DETACH_KEYS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    stdin: bool
    stdout: bool
    stderr: bool
    detach_keys: str
    logs: bool
    def __init__(self, id: _Optional[str] = ..., stdin: _Optional[bool] = ..., stdout: _Optional[bool] = ..., stderr: _Optional[bool] = ..., detach_keys: _Optional[str] = ..., logs: _Optional[bool] = ...) -> None: ...

class ExecOptions(_message.Message):
    __slots__ = ("id", "cmd", "env", "user", "working_dir", "tty", "stdin", "detach", "privileged", "detach_keys")
    ID_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    DETACH_KEYS_FIELD_NUMBER: _ClassVar[int]
    id: str
    cmd: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    user: str
    working_dir: str
    tty: bool
    stdin: bool
    detach: bool
    privileged: bool
    detach_keys: str
    def __init__(self, id: _Optional[str] = ..., cmd: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., working_dir: _Optional[str] = ..., tty: _Optional[bool] = ..., stdin: _Optional[bool] = ..., detach: _Optional[bool] = ..., privileged: _Optional[bool] = ..., detach_keys: _Optional[str] = ...) -> None: ...

class Resize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class StdioInput(_message.Message):
    __slots__ = ("attach", "exec", "stdin", "close_stdin", "resize")
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    attach: AttachOptions
    exec: ExecOptions
    stdin: bytes
    close_stdin: bool
    resize: Resize
    def __init__(self, attach: _Optional[_Union[AttachOptions, _Mapping]] = ..., exec: _Optional[_Union[ExecOptions, _Mapping]] = ..., stdin: _Optional[bytes] = ..., close_stdin: _Optional[bool] = ..., resize: _Optional[_Union[Resize, _Mapping]] = ...) -> None: ...

class ProcessExit(_message.Message):
    __slots__ = ("exit_code", "reason")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    reason: str
    def __init__(self, exit_code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StdioOutput(_message.Message):
    __slots__ = ("stdout", "stderr", "exit", "ready")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit: ProcessExit
    ready: bool
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ProcessExit, _Mapping]] = ..., ready: _Optional[bool] = ...) -> None: ...

class CopyFromContainerRequest(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class CopyChunk(_message.Message):
    __slots__ = ("stat_json", "data")
    STAT_JSON_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stat_json: str
    data: bytes
    def __init__(self, stat_json: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class CopyToContainerOptions(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class CopyToContainerChunk(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: CopyToContainerOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[CopyToContainerOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version", "api_version", "python_version", "os", "arch", "kernel_version", "cri_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CRI_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: str
    python_version: str
    os: str
    arch: str
    kernel_version: str
    cri_version: str
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[str] = ..., python_version: _Optional[str] = ..., os: _Optional[str] = ..., arch: _Optional[str] = ..., kernel_version: _Optional[str] = ..., cri_version: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegistryInfo(_message.Message):
    __slots__ = ("prefix", "location", "insecure", "mirrors", "blocked")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    MIRRORS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    location: str
    insecure: bool
    mirrors: _containers.RepeatedScalarFieldContainer[str]
    blocked: bool
    def __init__(self, prefix: _Optional[str] = ..., location: _Optional[str] = ..., insecure: _Optional[bool] = ..., mirrors: _Optional[_Iterable[str]] = ..., blocked: _Optional[bool] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("server_version", "storage_driver", "runtime", "runtime_path", "runtime_version", "rootless", "registries", "insecure_registries", "search_registries", "data_dir", "run_dir", "socket", "images", "containers", "containers_running", "containers_stopped", "kernel_version", "operating_system", "arch", "ncpu", "mem_total", "cgroup_version", "uid_map", "default_log_driver", "config_file", "registries_conf", "debug", "cgroup_driver", "cgroup_controllers", "cgroup_warning")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_DRIVER_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_PATH_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROOTLESS_FIELD_NUMBER: _ClassVar[int]
    REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    INSECURE_REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATING_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    NCPU_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CGROUP_VERSION_FIELD_NUMBER: _ClassVar[int]
    UID_MAP_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LOG_DRIVER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FILE_FIELD_NUMBER: _ClassVar[int]
    REGISTRIES_CONF_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    CGROUP_DRIVER_FIELD_NUMBER: _ClassVar[int]
    CGROUP_CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_WARNING_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    storage_driver: str
    runtime: str
    runtime_path: str
    runtime_version: str
    rootless: bool
    registries: _containers.RepeatedCompositeFieldContainer[RegistryInfo]
    insecure_registries: _containers.RepeatedScalarFieldContainer[str]
    search_registries: _containers.RepeatedScalarFieldContainer[str]
    data_dir: str
    run_dir: str
    socket: str
    images: int
    containers: int
    containers_running: int
    containers_stopped: int
    kernel_version: str
    operating_system: str
    arch: str
    ncpu: int
    mem_total: int
    cgroup_version: str
    uid_map: str
    default_log_driver: str
    config_file: str
    registries_conf: str
    debug: bool
    cgroup_driver: str
    cgroup_controllers: _containers.RepeatedScalarFieldContainer[str]
    cgroup_warning: str
    def __init__(self, server_version: _Optional[str] = ..., storage_driver: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_path: _Optional[str] = ..., runtime_version: _Optional[str] = ..., rootless: _Optional[bool] = ..., registries: _Optional[_Iterable[_Union[RegistryInfo, _Mapping]]] = ..., insecure_registries: _Optional[_Iterable[str]] = ..., search_registries: _Optional[_Iterable[str]] = ..., data_dir: _Optional[str] = ..., run_dir: _Optional[str] = ..., socket: _Optional[str] = ..., images: _Optional[int] = ..., containers: _Optional[int] = ..., containers_running: _Optional[int] = ..., containers_stopped: _Optional[int] = ..., kernel_version: _Optional[str] = ..., operating_system: _Optional[str] = ..., arch: _Optional[str] = ..., ncpu: _Optional[int] = ..., mem_total: _Optional[int] = ..., cgroup_version: _Optional[str] = ..., uid_map: _Optional[str] = ..., default_log_driver: _Optional[str] = ..., config_file: _Optional[str] = ..., registries_conf: _Optional[str] = ..., debug: _Optional[bool] = ..., cgroup_driver: _Optional[str] = ..., cgroup_controllers: _Optional[_Iterable[str]] = ..., cgroup_warning: _Optional[str] = ...) -> None: ...

class RegistryAuth(_message.Message):
    __slots__ = ("username", "password", "identity_token")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    identity_token: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., identity_token: _Optional[str] = ...) -> None: ...

class PullImageRequest(_message.Message):
    __slots__ = ("reference", "platform", "auth")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    platform: str
    auth: RegistryAuth
    def __init__(self, reference: _Optional[str] = ..., platform: _Optional[str] = ..., auth: _Optional[_Union[RegistryAuth, _Mapping]] = ...) -> None: ...

class LayerProgress(_message.Message):
    __slots__ = ("id", "status", "current", "total")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    current: int
    total: int
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class PullImageResult(_message.Message):
    __slots__ = ("image_id", "reference", "repo_digest", "up_to_date")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGEST_FIELD_NUMBER: _ClassVar[int]
    UP_TO_DATE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    reference: str
    repo_digest: str
    up_to_date: bool
    def __init__(self, image_id: _Optional[str] = ..., reference: _Optional[str] = ..., repo_digest: _Optional[str] = ..., up_to_date: _Optional[bool] = ...) -> None: ...

class PullImageProgress(_message.Message):
    __slots__ = ("status", "layer", "result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    status: str
    layer: LayerProgress
    result: PullImageResult
    def __init__(self, status: _Optional[str] = ..., layer: _Optional[_Union[LayerProgress, _Mapping]] = ..., result: _Optional[_Union[PullImageResult, _Mapping]] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("all", "filters", "reference")
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALL_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    all: bool
    filters: _containers.ScalarMap[str, str]
    reference: str
    def __init__(self, all: _Optional[bool] = ..., filters: _Optional[_Mapping[str, str]] = ..., reference: _Optional[str] = ...) -> None: ...

class ImageSummary(_message.Message):
    __slots__ = ("id", "repo_tags", "repo_digests", "created", "size", "labels", "containers")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    repo_digests: _containers.RepeatedScalarFieldContainer[str]
    created: int
    size: int
    labels: _containers.ScalarMap[str, str]
    containers: int
    def __init__(self, id: _Optional[str] = ..., repo_tags: _Optional[_Iterable[str]] = ..., repo_digests: _Optional[_Iterable[str]] = ..., created: _Optional[int] = ..., size: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., containers: _Optional[int] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageSummary]
    def __init__(self, images: _Optional[_Iterable[_Union[ImageSummary, _Mapping]]] = ...) -> None: ...

class InspectImageRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class InspectImageResponse(_message.Message):
    __slots__ = ("json", "summary")
    JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    json: str
    summary: ImageSummary
    def __init__(self, json: _Optional[str] = ..., summary: _Optional[_Union[ImageSummary, _Mapping]] = ...) -> None: ...

class TagImageRequest(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class TagImageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("reference", "force", "no_prune")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_PRUNE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    force: bool
    no_prune: bool
    def __init__(self, reference: _Optional[str] = ..., force: _Optional[bool] = ..., no_prune: _Optional[bool] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("untagged", "deleted")
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    untagged: _containers.RepeatedScalarFieldContainer[str]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, untagged: _Optional[_Iterable[str]] = ..., deleted: _Optional[_Iterable[str]] = ...) -> None: ...

class PruneImagesRequest(_message.Message):
    __slots__ = ("all", "filters")
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALL_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    all: bool
    filters: _containers.ScalarMap[str, str]
    def __init__(self, all: _Optional[bool] = ..., filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PruneImagesResponse(_message.Message):
    __slots__ = ("untagged", "deleted", "space_reclaimed")
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    untagged: _containers.RepeatedScalarFieldContainer[str]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed: int
    def __init__(self, untagged: _Optional[_Iterable[str]] = ..., deleted: _Optional[_Iterable[str]] = ..., space_reclaimed: _Optional[int] = ...) -> None: ...

class ImportOptions(_message.Message):
    __slots__ = ("reference", "changes", "message", "platform", "source")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    message: str
    platform: str
    source: str
    def __init__(self, reference: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., platform: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ImportImageChunk(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: ImportOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[ImportOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportImageResponse(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("server", "username", "password")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    server: str
    username: str
    password: str
    def __init__(self, server: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("status", "server")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    status: str
    server: str
    def __init__(self, status: _Optional[str] = ..., server: _Optional[str] = ...) -> None: ...

class NamespacesRequest(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: bool
    def __init__(self, network: _Optional[bool] = ...) -> None: ...

class NamespacesResponse(_message.Message):
    __slots__ = ("pid", "user_ns", "mount_ns", "network_ns_path", "socket")
    PID_FIELD_NUMBER: _ClassVar[int]
    USER_NS_FIELD_NUMBER: _ClassVar[int]
    MOUNT_NS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NS_PATH_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    pid: int
    user_ns: int
    mount_ns: int
    network_ns_path: str
    socket: str
    def __init__(self, pid: _Optional[int] = ..., user_ns: _Optional[int] = ..., mount_ns: _Optional[int] = ..., network_ns_path: _Optional[str] = ..., socket: _Optional[str] = ...) -> None: ...

class PushImageRequest(_message.Message):
    __slots__ = ("reference", "all_tags", "auth")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ALL_TAGS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    all_tags: bool
    auth: RegistryAuth
    def __init__(self, reference: _Optional[str] = ..., all_tags: _Optional[bool] = ..., auth: _Optional[_Union[RegistryAuth, _Mapping]] = ...) -> None: ...

class PushedTag(_message.Message):
    __slots__ = ("tag", "digest", "size")
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    tag: str
    digest: str
    size: int
    def __init__(self, tag: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class PushImageResult(_message.Message):
    __slots__ = ("repository", "tags")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    tags: _containers.RepeatedCompositeFieldContainer[PushedTag]
    def __init__(self, repository: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[PushedTag, _Mapping]]] = ...) -> None: ...

class PushImageProgress(_message.Message):
    __slots__ = ("status", "layer", "result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    status: str
    layer: LayerProgress
    result: PushImageResult
    def __init__(self, status: _Optional[str] = ..., layer: _Optional[_Union[LayerProgress, _Mapping]] = ..., result: _Optional[_Union[PushImageResult, _Mapping]] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ImageHistoryRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class HistoryItem(_message.Message):
    __slots__ = ("id", "created", "created_by", "size", "comment", "tags")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created: int
    created_by: str
    size: int
    comment: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., created: _Optional[int] = ..., created_by: _Optional[str] = ..., size: _Optional[int] = ..., comment: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ImageHistoryResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[HistoryItem]
    def __init__(self, items: _Optional[_Iterable[_Union[HistoryItem, _Mapping]]] = ...) -> None: ...

class SaveImagesRequest(_message.Message):
    __slots__ = ("references",)
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, references: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadedImage(_message.Message):
    __slots__ = ("image_id", "tags")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadImagesResponse(_message.Message):
    __slots__ = ("images", "replaced")
    class ReplacedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[LoadedImage]
    replaced: _containers.ScalarMap[str, str]
    def __init__(self, images: _Optional[_Iterable[_Union[LoadedImage, _Mapping]]] = ..., replaced: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CommitContainerRequest(_message.Message):
    __slots__ = ("container", "reference", "author", "comment", "changes", "pause")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    container: str
    reference: str
    author: str
    comment: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    pause: bool
    def __init__(self, container: _Optional[str] = ..., reference: _Optional[str] = ..., author: _Optional[str] = ..., comment: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ..., pause: _Optional[bool] = ...) -> None: ...

class CommitContainerResponse(_message.Message):
    __slots__ = ("image_id", "paused")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    paused: bool
    def __init__(self, image_id: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class FileChange(_message.Message):
    __slots__ = ("path", "kind")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: str
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ContainerChangesResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[FileChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[FileChange, _Mapping]]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("memory", "memory_swap", "memory_reservation", "kernel_memory", "oom_kill_disable", "nano_cpus", "cpu_shares", "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems", "blkio_weight", "blkio_weight_device", "device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops", "pids_limit", "ulimits", "shm_size", "cgroup_parent")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SWAP_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RESERVATION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MEMORY_FIELD_NUMBER: _ClassVar[int]
    OOM_KILL_DISABLE_FIELD_NUMBER: _ClassVar[int]
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERIOD_FIELD_NUMBER: _ClassVar[int]
    CPU_QUOTA_FIELD_NUMBER: _ClassVar[int]
    CPUSET_CPUS_FIELD_NUMBER: _ClassVar[int]
    CPUSET_MEMS_FIELD_NUMBER: _ClassVar[int]
    BLKIO_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLKIO_WEIGHT_DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_READ_BPS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_WRITE_BPS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_READ_IOPS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_WRITE_IOPS_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ULIMITS_FIELD_NUMBER: _ClassVar[int]
    SHM_SIZE_FIELD_NUMBER: _ClassVar[int]
    CGROUP_PARENT_FIELD_NUMBER: _ClassVar[int]
    memory: int
    memory_swap: int
    memory_reservation: int
    kernel_memory: int
    oom_kill_disable: bool
    nano_cpus: int
    cpu_shares: int
    cpu_period: int
    cpu_quota: int
    cpuset_cpus: str
    cpuset_mems: str
    blkio_weight: int
    blkio_weight_device: _containers.RepeatedCompositeFieldContainer[DeviceLimit]
    device_read_bps: _containers.RepeatedCompositeFieldContainer[DeviceLimit]
    device_write_bps: _containers.RepeatedCompositeFieldContainer[DeviceLimit]
    device_read_iops: _containers.RepeatedCompositeFieldContainer[DeviceLimit]
    device_write_iops: _containers.RepeatedCompositeFieldContainer[DeviceLimit]
    pids_limit: int
    ulimits: _containers.RepeatedCompositeFieldContainer[Ulimit]
    shm_size: int
    cgroup_parent: str
    def __init__(self, memory: _Optional[int] = ..., memory_swap: _Optional[int] = ..., memory_reservation: _Optional[int] = ..., kernel_memory: _Optional[int] = ..., oom_kill_disable: _Optional[bool] = ..., nano_cpus: _Optional[int] = ..., cpu_shares: _Optional[int] = ..., cpu_period: _Optional[int] = ..., cpu_quota: _Optional[int] = ..., cpuset_cpus: _Optional[str] = ..., cpuset_mems: _Optional[str] = ..., blkio_weight: _Optional[int] = ..., blkio_weight_device: _Optional[_Iterable[_Union[DeviceLimit, _Mapping]]] = ..., device_read_bps: _Optional[_Iterable[_Union[DeviceLimit, _Mapping]]] = ..., device_write_bps: _Optional[_Iterable[_Union[DeviceLimit, _Mapping]]] = ..., device_read_iops: _Optional[_Iterable[_Union[DeviceLimit, _Mapping]]] = ..., device_write_iops: _Optional[_Iterable[_Union[DeviceLimit, _Mapping]]] = ..., pids_limit: _Optional[int] = ..., ulimits: _Optional[_Iterable[_Union[Ulimit, _Mapping]]] = ..., shm_size: _Optional[int] = ..., cgroup_parent: _Optional[str] = ...) -> None: ...

class DeviceLimit(_message.Message):
    __slots__ = ("path", "value")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    path: str
    value: int
    def __init__(self, path: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class Ulimit(_message.Message):
    __slots__ = ("name", "soft", "hard")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    name: str
    soft: int
    hard: int
    def __init__(self, name: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...

class UpdateContainerRequest(_message.Message):
    __slots__ = ("id", "resources", "pids_limit_set")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_SET_FIELD_NUMBER: _ClassVar[int]
    id: str
    resources: Resources
    pids_limit_set: bool
    def __init__(self, id: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., pids_limit_set: _Optional[bool] = ...) -> None: ...

class UpdateContainerResponse(_message.Message):
    __slots__ = ("warnings",)
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildOptions(_message.Message):
    __slots__ = ("tags", "dockerfile", "dockerfile_path", "build_args", "target", "no_cache", "pull", "labels", "platform", "network")
    class BuildArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_PATH_FIELD_NUMBER: _ClassVar[int]
    BUILD_ARGS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    PULL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    dockerfile: bytes
    dockerfile_path: str
    build_args: _containers.ScalarMap[str, str]
    target: str
    no_cache: bool
    pull: bool
    labels: _containers.ScalarMap[str, str]
    platform: str
    network: str
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., dockerfile: _Optional[bytes] = ..., dockerfile_path: _Optional[str] = ..., build_args: _Optional[_Mapping[str, str]] = ..., target: _Optional[str] = ..., no_cache: _Optional[bool] = ..., pull: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., platform: _Optional[str] = ..., network: _Optional[str] = ...) -> None: ...

class BuildInput(_message.Message):
    __slots__ = ("options", "context")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    options: BuildOptions
    context: bytes
    def __init__(self, options: _Optional[_Union[BuildOptions, _Mapping]] = ..., context: _Optional[bytes] = ...) -> None: ...

class BuildOutput(_message.Message):
    __slots__ = ("stream", "error", "image_id", "tags")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    error: str
    image_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stream: _Optional[str] = ..., error: _Optional[str] = ..., image_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class PruneBuildCacheRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PruneBuildCacheResponse(_message.Message):
    __slots__ = ("deleted", "space_reclaimed")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., space_reclaimed: _Optional[int] = ...) -> None: ...

class ContainerStatsRequest(_message.Message):
    __slots__ = ("containers", "all", "stream")
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    stream: bool
    def __init__(self, containers: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., stream: _Optional[bool] = ...) -> None: ...

class ContainerStatsEntry(_message.Message):
    __slots__ = ("id", "name", "running", "read", "preread", "cpu_total_ns", "pre_cpu_total_ns", "system_cpu_ns", "pre_system_cpu_ns", "online_cpus", "memory_usage", "memory_limit", "net_rx_bytes", "net_tx_bytes", "block_read_bytes", "block_write_bytes", "pids", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    PREREAD_FIELD_NUMBER: _ClassVar[int]
    CPU_TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    PRE_CPU_TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CPU_NS_FIELD_NUMBER: _ClassVar[int]
    PRE_SYSTEM_CPU_NS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    NET_RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    NET_TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    running: bool
    read: int
    preread: int
    cpu_total_ns: int
    pre_cpu_total_ns: int
    system_cpu_ns: int
    pre_system_cpu_ns: int
    online_cpus: int
    memory_usage: int
    memory_limit: int
    net_rx_bytes: int
    net_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    pids: int
    source: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., running: _Optional[bool] = ..., read: _Optional[int] = ..., preread: _Optional[int] = ..., cpu_total_ns: _Optional[int] = ..., pre_cpu_total_ns: _Optional[int] = ..., system_cpu_ns: _Optional[int] = ..., pre_system_cpu_ns: _Optional[int] = ..., online_cpus: _Optional[int] = ..., memory_usage: _Optional[int] = ..., memory_limit: _Optional[int] = ..., net_rx_bytes: _Optional[int] = ..., net_tx_bytes: _Optional[int] = ..., block_read_bytes: _Optional[int] = ..., block_write_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class ContainerStatsBatch(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ContainerStatsEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ContainerStatsEntry, _Mapping]]] = ...) -> None: ...

class SystemDfRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DfImage(_message.Message):
    __slots__ = ("image", "shared_size")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SHARED_SIZE_FIELD_NUMBER: _ClassVar[int]
    image: ImageSummary
    shared_size: int
    def __init__(self, image: _Optional[_Union[ImageSummary, _Mapping]] = ..., shared_size: _Optional[int] = ...) -> None: ...

class DfContainer(_message.Message):
    __slots__ = ("container", "local_volumes")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    LOCAL_VOLUMES_FIELD_NUMBER: _ClassVar[int]
    container: ContainerSummary
    local_volumes: int
    def __init__(self, container: _Optional[_Union[ContainerSummary, _Mapping]] = ..., local_volumes: _Optional[int] = ...) -> None: ...

class DfVolume(_message.Message):
    __slots__ = ("name", "driver", "size", "links", "anonymous")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    size: int
    links: int
    anonymous: bool
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., size: _Optional[int] = ..., links: _Optional[int] = ..., anonymous: _Optional[bool] = ...) -> None: ...

class DfBuildCache(_message.Message):
    __slots__ = ("id", "type", "size", "created", "last_used", "usage_count", "in_use", "shared")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    size: int
    created: int
    last_used: int
    usage_count: int
    in_use: bool
    shared: bool
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., size: _Optional[int] = ..., created: _Optional[int] = ..., last_used: _Optional[int] = ..., usage_count: _Optional[int] = ..., in_use: _Optional[bool] = ..., shared: _Optional[bool] = ...) -> None: ...

class SystemDfResponse(_message.Message):
    __slots__ = ("layers_size", "images", "containers", "volumes", "build_cache")
    LAYERS_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    BUILD_CACHE_FIELD_NUMBER: _ClassVar[int]
    layers_size: int
    images: _containers.RepeatedCompositeFieldContainer[DfImage]
    containers: _containers.RepeatedCompositeFieldContainer[DfContainer]
    volumes: _containers.RepeatedCompositeFieldContainer[DfVolume]
    build_cache: _containers.RepeatedCompositeFieldContainer[DfBuildCache]
    def __init__(self, layers_size: _Optional[int] = ..., images: _Optional[_Iterable[_Union[DfImage, _Mapping]]] = ..., containers: _Optional[_Iterable[_Union[DfContainer, _Mapping]]] = ..., volumes: _Optional[_Iterable[_Union[DfVolume, _Mapping]]] = ..., build_cache: _Optional[_Iterable[_Union[DfBuildCache, _Mapping]]] = ...) -> None: ...
