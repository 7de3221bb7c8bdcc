from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_STATUS_UNSPECIFIED: _ClassVar[FieldStatus]
    FIELD_STATUS_PRESENT: _ClassVar[FieldStatus]
    FIELD_STATUS_NOT_FOUND: _ClassVar[FieldStatus]
    FIELD_STATUS_OUTSIDE_MAX_AGE: _ClassVar[FieldStatus]
    FIELD_STATUS_IMPUTED: _ClassVar[FieldStatus]

class PushTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUSH_TARGET_UNSPECIFIED: _ClassVar[PushTarget]
    PUSH_TARGET_ONLINE: _ClassVar[PushTarget]
    PUSH_TARGET_OFFLINE: _ClassVar[PushTarget]
    PUSH_TARGET_ONLINE_AND_OFFLINE: _ClassVar[PushTarget]
FIELD_STATUS_UNSPECIFIED: FieldStatus
FIELD_STATUS_PRESENT: FieldStatus
FIELD_STATUS_NOT_FOUND: FieldStatus
FIELD_STATUS_OUTSIDE_MAX_AGE: FieldStatus
FIELD_STATUS_IMPUTED: FieldStatus
PUSH_TARGET_UNSPECIFIED: PushTarget
PUSH_TARGET_ONLINE: PushTarget
PUSH_TARGET_OFFLINE: PushTarget
PUSH_TARGET_ONLINE_AND_OFFLINE: PushTarget

class Column(_message.Message):
    __slots__ = ("int64_values", "int32_values", "double_values", "float_values", "string_values", "bool_values", "bytes_values", "timestamp_values", "array_values", "nulls")
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT32_VALUES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUES_FIELD_NUMBER: _ClassVar[int]
    ARRAY_VALUES_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    int64_values: Int64Values
    int32_values: Int32Values
    double_values: DoubleValues
    float_values: FloatValues
    string_values: StringValues
    bool_values: BoolValues
    bytes_values: BytesValues
    timestamp_values: TimestampValues
    array_values: ArrayValues
    nulls: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, int64_values: _Optional[_Union[Int64Values, _Mapping]] = ..., int32_values: _Optional[_Union[Int32Values, _Mapping]] = ..., double_values: _Optional[_Union[DoubleValues, _Mapping]] = ..., float_values: _Optional[_Union[FloatValues, _Mapping]] = ..., string_values: _Optional[_Union[StringValues, _Mapping]] = ..., bool_values: _Optional[_Union[BoolValues, _Mapping]] = ..., bytes_values: _Optional[_Union[BytesValues, _Mapping]] = ..., timestamp_values: _Optional[_Union[TimestampValues, _Mapping]] = ..., array_values: _Optional[_Union[ArrayValues, _Mapping]] = ..., nulls: _Optional[_Iterable[bool]] = ...) -> None: ...

class Int64Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class Int32Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class DoubleValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class FloatValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BoolValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class BytesValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TimestampValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class ArrayValues(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, rows: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class FeatureList(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("feature_list", "feature_service", "entities", "request_data", "full_feature_names")
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Column
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Column, _Mapping]] = ...) -> None: ...
    class RequestDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Column
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Column, _Mapping]] = ...) -> None: ...
    FEATURE_LIST_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DATA_FIELD_NUMBER: _ClassVar[int]
    FULL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    feature_list: FeatureList
    feature_service: str
    entities: _containers.MessageMap[str, Column]
    request_data: _containers.MessageMap[str, Column]
    full_feature_names: bool
    def __init__(self, feature_list: _Optional[_Union[FeatureList, _Mapping]] = ..., feature_service: _Optional[str] = ..., entities: _Optional[_Mapping[str, Column]] = ..., request_data: _Optional[_Mapping[str, Column]] = ..., full_feature_names: _Optional[bool] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ("name", "values", "statuses", "event_timestamps", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: Column
    statuses: _containers.RepeatedScalarFieldContainer[FieldStatus]
    event_timestamps: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Union[Column, _Mapping]] = ..., statuses: _Optional[_Iterable[_Union[FieldStatus, str]]] = ..., event_timestamps: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("entities", "features")
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Column
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Column, _Mapping]] = ...) -> None: ...
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.MessageMap[str, Column]
    features: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    def __init__(self, entities: _Optional[_Mapping[str, Column]] = ..., features: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ...) -> None: ...

class GetHistoricalFeaturesRequest(_message.Message):
    __slots__ = ("arrow_ipc", "path", "feature_list", "feature_service", "full_feature_names", "timestamp_column")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LIST_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    FULL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_COLUMN_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    path: str
    feature_list: FeatureList
    feature_service: str
    full_feature_names: bool
    timestamp_column: str
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., path: _Optional[str] = ..., feature_list: _Optional[_Union[FeatureList, _Mapping]] = ..., feature_service: _Optional[str] = ..., full_feature_names: _Optional[bool] = ..., timestamp_column: _Optional[str] = ...) -> None: ...

class ArrowBatch(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("feature_view", "arrow_ipc", "to")
    FEATURE_VIEW_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    feature_view: str
    arrow_ipc: bytes
    to: PushTarget
    def __init__(self, feature_view: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ..., to: _Optional[_Union[PushTarget, str]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    def __init__(self, rows: _Optional[int] = ...) -> None: ...

class ListFeatureViewsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ("name", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ...) -> None: ...

class FeatureViewInfo(_message.Message):
    __slots__ = ("name", "entities", "join_keys", "features", "ttl_seconds", "online", "description", "owner", "tags", "version")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    entities: _containers.RepeatedScalarFieldContainer[str]
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    ttl_seconds: float
    online: bool
    description: str
    owner: str
    tags: _containers.ScalarMap[str, str]
    version: int
    def __init__(self, name: _Optional[str] = ..., entities: _Optional[_Iterable[str]] = ..., join_keys: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., ttl_seconds: _Optional[float] = ..., online: _Optional[bool] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ...) -> None: ...

class ListFeatureViewsResponse(_message.Message):
    __slots__ = ("feature_views",)
    FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    feature_views: _containers.RepeatedCompositeFieldContainer[FeatureViewInfo]
    def __init__(self, feature_views: _Optional[_Iterable[_Union[FeatureViewInfo, _Mapping]]] = ...) -> None: ...

class GetFeatureServiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetFeatureServiceResponse(_message.Message):
    __slots__ = ("name", "features", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    features: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...
