# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_KIND_UNSPECIFIED: _ClassVar[InputKind]
    INPUT_KIND_NETWORK: _ClassVar[InputKind]
    INPUT_KIND_REPLAYED: _ClassVar[InputKind]
    INPUT_KIND_BIAS: _ClassVar[InputKind]

class SpikeLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPIKE_LAYOUT_RECORDS: _ClassVar[SpikeLayout]
    SPIKE_LAYOUT_COLUMNS: _ClassVar[SpikeLayout]

class Record(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_UNSPECIFIED: _ClassVar[Record]
    RECORD_FIRST: _ClassVar[Record]
    RECORD_ALL: _ClassVar[Record]
INPUT_KIND_UNSPECIFIED: InputKind
INPUT_KIND_NETWORK: InputKind
INPUT_KIND_REPLAYED: InputKind
INPUT_KIND_BIAS: InputKind
SPIKE_LAYOUT_RECORDS: SpikeLayout
SPIKE_LAYOUT_COLUMNS: SpikeLayout
RECORD_UNSPECIFIED: Record
RECORD_FIRST: Record
RECORD_ALL: Record

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Number(_message.Message):
    __slots__ = ("int_value", "float_value")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    float_value: float
    def __init__(self, int_value: _Optional[int] = ..., float_value: _Optional[float] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("model", "serial", "version", "resource_model", "max_batch", "max_duration_ticks", "max_events", "deterministic", "membrane_readout", "extra_json", "server_version", "protocol", "max_message_bytes", "default_lease_ttl_ms", "max_lease_ttl_ms")
    class ResourceModelEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Number
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Number, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_TICKS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DETERMINISTIC_FIELD_NUMBER: _ClassVar[int]
    MEMBRANE_READOUT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    serial: int
    version: str
    resource_model: _containers.MessageMap[str, Number]
    max_batch: int
    max_duration_ticks: int
    max_events: int
    deterministic: bool
    membrane_readout: int
    extra_json: str
    server_version: str
    protocol: str
    max_message_bytes: int
    default_lease_ttl_ms: int
    max_lease_ttl_ms: int
    def __init__(self, model: _Optional[str] = ..., serial: _Optional[int] = ..., version: _Optional[str] = ..., resource_model: _Optional[_Mapping[str, Number]] = ..., max_batch: _Optional[int] = ..., max_duration_ticks: _Optional[int] = ..., max_events: _Optional[int] = ..., deterministic: _Optional[bool] = ..., membrane_readout: _Optional[int] = ..., extra_json: _Optional[str] = ..., server_version: _Optional[str] = ..., protocol: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., default_lease_ttl_ms: _Optional[int] = ..., max_lease_ttl_ms: _Optional[int] = ...) -> None: ...

class AcquireLeaseRequest(_message.Message):
    __slots__ = ("client_name", "exclusive", "ttl_ms", "wait_ms")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    exclusive: bool
    ttl_ms: int
    wait_ms: int
    def __init__(self, client_name: _Optional[str] = ..., exclusive: _Optional[bool] = ..., ttl_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class AcquireLeaseResponse(_message.Message):
    __slots__ = ("lease_id", "ttl_ms", "config_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    ttl_ms: int
    config_id: str
    def __init__(self, lease_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., config_id: _Optional[str] = ...) -> None: ...

class RenewLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class RenewLeaseResponse(_message.Message):
    __slots__ = ("ttl_ms", "config_id")
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    config_id: str
    def __init__(self, ttl_ms: _Optional[int] = ..., config_id: _Optional[str] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoadConfigRequest(_message.Message):
    __slots__ = ("lease_id", "config")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    config: bytes
    def __init__(self, lease_id: _Optional[str] = ..., config: _Optional[bytes] = ...) -> None: ...

class LoadArtifactRequest(_message.Message):
    __slots__ = ("lease_id", "artifact", "stage")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    artifact: bytes
    stage: int
    def __init__(self, lease_id: _Optional[str] = ..., artifact: _Optional[bytes] = ..., stage: _Optional[int] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("config_id", "config")
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    config: bytes
    def __init__(self, config_id: _Optional[str] = ..., config: _Optional[bytes] = ...) -> None: ...

class UpdateConfigRequest(_message.Message):
    __slots__ = ("lease_id", "diff")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    diff: bytes
    def __init__(self, lease_id: _Optional[str] = ..., diff: _Optional[bytes] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ConfigResponse(_message.Message):
    __slots__ = ("config_id", "summary", "unchanged", "artifact")
    class SummaryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    summary: _containers.ScalarMap[str, int]
    unchanged: bool
    artifact: ArtifactLayout
    def __init__(self, config_id: _Optional[str] = ..., summary: _Optional[_Mapping[str, int]] = ..., unchanged: _Optional[bool] = ..., artifact: _Optional[_Union[ArtifactLayout, _Mapping]] = ...) -> None: ...

class ArtifactLayout(_message.Message):
    __slots__ = ("stages", "stage", "tau_s_ticks", "n_inputs", "inputs", "layers", "output_neurons")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TAU_S_TICKS_FIELD_NUMBER: _ClassVar[int]
    N_INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NEURONS_FIELD_NUMBER: _ClassVar[int]
    stages: int
    stage: int
    tau_s_ticks: float
    n_inputs: int
    inputs: _containers.RepeatedCompositeFieldContainer[ArtifactInput]
    layers: _containers.RepeatedCompositeFieldContainer[ArtifactLayer]
    output_neurons: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stages: _Optional[int] = ..., stage: _Optional[int] = ..., tau_s_ticks: _Optional[float] = ..., n_inputs: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[ArtifactInput, _Mapping]]] = ..., layers: _Optional[_Iterable[_Union[ArtifactLayer, _Mapping]]] = ..., output_neurons: _Optional[_Iterable[int]] = ...) -> None: ...

class ArtifactInput(_message.Message):
    __slots__ = ("channel", "kind", "index", "layer", "bias_time", "bias_ticks")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    BIAS_TIME_FIELD_NUMBER: _ClassVar[int]
    BIAS_TICKS_FIELD_NUMBER: _ClassVar[int]
    channel: int
    kind: InputKind
    index: int
    layer: int
    bias_time: float
    bias_ticks: int
    def __init__(self, channel: _Optional[int] = ..., kind: _Optional[_Union[InputKind, str]] = ..., index: _Optional[int] = ..., layer: _Optional[int] = ..., bias_time: _Optional[float] = ..., bias_ticks: _Optional[int] = ...) -> None: ...

class ArtifactLayer(_message.Message):
    __slots__ = ("index", "name", "stage", "n_in", "has_bias", "neuron_ids")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    N_IN_FIELD_NUMBER: _ClassVar[int]
    HAS_BIAS_FIELD_NUMBER: _ClassVar[int]
    NEURON_IDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    stage: int
    n_in: int
    has_bias: bool
    neuron_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., stage: _Optional[int] = ..., n_in: _Optional[int] = ..., has_bias: _Optional[bool] = ..., neuron_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class SpikeBatch(_message.Message):
    __slots__ = ("batch_size", "events", "layout", "entry_counts", "times", "labels", "time_bytes")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIME_BYTES_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    events: bytes
    layout: SpikeLayout
    entry_counts: bytes
    times: bytes
    labels: bytes
    time_bytes: int
    def __init__(self, batch_size: _Optional[int] = ..., events: _Optional[bytes] = ..., layout: _Optional[_Union[SpikeLayout, str]] = ..., entry_counts: _Optional[bytes] = ..., times: _Optional[bytes] = ..., labels: _Optional[bytes] = ..., time_bytes: _Optional[int] = ...) -> None: ...

class RunOptions(_message.Message):
    __slots__ = ("duration_ticks", "record", "seed", "readout", "readout_period", "entry_offset")
    DURATION_TICKS_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    READOUT_FIELD_NUMBER: _ClassVar[int]
    READOUT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ENTRY_OFFSET_FIELD_NUMBER: _ClassVar[int]
    duration_ticks: int
    record: Record
    seed: int
    readout: _containers.RepeatedScalarFieldContainer[int]
    readout_period: int
    entry_offset: int
    def __init__(self, duration_ticks: _Optional[int] = ..., record: _Optional[_Union[Record, str]] = ..., seed: _Optional[int] = ..., readout: _Optional[_Iterable[int]] = ..., readout_period: _Optional[int] = ..., entry_offset: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("lease_id", "config_id", "inputs", "options", "sequence", "result_layout")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    config_id: str
    inputs: SpikeBatch
    options: RunOptions
    sequence: int
    result_layout: SpikeLayout
    def __init__(self, lease_id: _Optional[str] = ..., config_id: _Optional[str] = ..., inputs: _Optional[_Union[SpikeBatch, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ..., sequence: _Optional[int] = ..., result_layout: _Optional[_Union[SpikeLayout, str]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("spikes", "dropped", "membrane", "stats", "config_id", "sequence", "device_us")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SPIKES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MEMBRANE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_US_FIELD_NUMBER: _ClassVar[int]
    spikes: SpikeBatch
    dropped: int
    membrane: Tensor
    stats: _containers.ScalarMap[str, int]
    config_id: str
    sequence: int
    device_us: int
    def __init__(self, spikes: _Optional[_Union[SpikeBatch, _Mapping]] = ..., dropped: _Optional[int] = ..., membrane: _Optional[_Union[Tensor, _Mapping]] = ..., stats: _Optional[_Mapping[str, int]] = ..., config_id: _Optional[str] = ..., sequence: _Optional[int] = ..., device_us: _Optional[int] = ...) -> None: ...
