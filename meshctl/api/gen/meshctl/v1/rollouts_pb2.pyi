from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApproveRequest(_message.Message):
    __slots__ = ("namespace", "name", "comment")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    comment: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("namespace", "name", "image", "rollout_json")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_JSON_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    image: str
    rollout_json: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., image: _Optional[str] = ..., rollout_json: _Optional[str] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("role", "revision", "image")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    role: str
    revision: str
    image: str
    def __init__(self, role: _Optional[str] = ..., revision: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("time", "action", "by", "via", "comment", "detail")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    time: str
    action: str
    by: str
    via: str
    comment: str
    detail: str
    def __init__(self, time: _Optional[str] = ..., action: _Optional[str] = ..., by: _Optional[str] = ..., via: _Optional[str] = ..., comment: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("time", "type", "reason", "message")
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: str
    type: str
    reason: str
    message: str
    def __init__(self, time: _Optional[str] = ..., type: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("rollout", "revisions", "events", "audit")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    revisions: _containers.RepeatedCompositeFieldContainer[Revision]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    audit: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., revisions: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., audit: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class RolloutRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class WatchRolloutRequest(_message.Message):
    __slots__ = ("namespace", "name", "timeout_seconds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    timeout_seconds: float
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("namespace", "name", "full")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    full: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., full: _Optional[bool] = ...) -> None: ...

class Weights(_message.Message):
    __slots__ = ("stable", "canary", "baseline")
    STABLE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    stable: int
    canary: int
    baseline: int
    def __init__(self, stable: _Optional[int] = ..., canary: _Optional[int] = ..., baseline: _Optional[int] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("metric", "run", "value", "outcome", "at")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    run: str
    value: float
    outcome: str
    at: str
    def __init__(self, metric: _Optional[str] = ..., run: _Optional[str] = ..., value: _Optional[float] = ..., outcome: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class JudgeMetric(_message.Message):
    __slots__ = ("name", "verdict", "direction", "p_value", "effect_size", "canary_mean", "baseline_mean", "canary_samples", "baseline_samples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CANARY_MEAN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MEAN_FIELD_NUMBER: _ClassVar[int]
    CANARY_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    verdict: str
    direction: str
    p_value: float
    effect_size: float
    canary_mean: float
    baseline_mean: float
    canary_samples: int
    baseline_samples: int
    def __init__(self, name: _Optional[str] = ..., verdict: _Optional[str] = ..., direction: _Optional[str] = ..., p_value: _Optional[float] = ..., effect_size: _Optional[float] = ..., canary_mean: _Optional[float] = ..., baseline_mean: _Optional[float] = ..., canary_samples: _Optional[int] = ..., baseline_samples: _Optional[int] = ...) -> None: ...

class Judgement(_message.Message):
    __slots__ = ("run", "at", "verdict", "score", "baseline", "metrics")
    RUN_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    run: str
    at: str
    verdict: str
    score: float
    baseline: str
    metrics: _containers.RepeatedCompositeFieldContainer[JudgeMetric]
    def __init__(self, run: _Optional[str] = ..., at: _Optional[str] = ..., verdict: _Optional[str] = ..., score: _Optional[float] = ..., baseline: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[JudgeMetric, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "last_transition_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_transition_time: _Optional[str] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("name", "namespace", "phase", "step", "total_steps", "weights", "observed_weights", "measurements", "message", "conditions", "abort_reason", "pause_reason", "revision", "stable_revision", "image", "paused", "generation", "observed_generation", "pending_intents", "not_observed", "judgement")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ABORT_REASON_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STABLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    PENDING_INTENTS_FIELD_NUMBER: _ClassVar[int]
    NOT_OBSERVED_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    phase: str
    step: int
    total_steps: int
    weights: Weights
    observed_weights: Weights
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    message: str
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    abort_reason: str
    pause_reason: str
    revision: str
    stable_revision: str
    image: str
    paused: bool
    generation: int
    observed_generation: int
    pending_intents: _containers.RepeatedScalarFieldContainer[str]
    not_observed: str
    judgement: Judgement
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., phase: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., weights: _Optional[_Union[Weights, _Mapping]] = ..., observed_weights: _Optional[_Union[Weights, _Mapping]] = ..., measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ..., message: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., abort_reason: _Optional[str] = ..., pause_reason: _Optional[str] = ..., revision: _Optional[str] = ..., stable_revision: _Optional[str] = ..., image: _Optional[str] = ..., paused: _Optional[bool] = ..., generation: _Optional[int] = ..., observed_generation: _Optional[int] = ..., pending_intents: _Optional[_Iterable[str]] = ..., not_observed: _Optional[str] = ..., judgement: _Optional[_Union[Judgement, _Mapping]] = ...) -> None: ...
