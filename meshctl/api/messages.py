"""Between the views of :mod:`meshctl.ops.views` (and :mod:`~meshctl.ops.history`) and the messages of
``protos/meshctl/v1/rollouts.proto``: one field for one field, the same names."""

from __future__ import annotations

from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb
from meshctl.ops.history import AuditView, EventView, History, RevisionView
from meshctl.ops.views import (
    ConditionView,
    JudgementView,
    JudgeMetricView,
    MeasurementView,
    RolloutView,
    WeightsView,
)


def _weights(view: WeightsView) -> pb.Weights:
    return pb.Weights(stable=view.stable, canary=view.canary, baseline=view.baseline)


def to_message(view: RolloutView) -> pb.Rollout:
    message = pb.Rollout(
        name=view.name, namespace=view.namespace, phase=view.phase, step=view.step,
        total_steps=view.total_steps,
        weights=_weights(view.weights),
        measurements=[_measurement(m) for m in view.measurements], message=view.message,
        conditions=[pb.Condition(type=c.type, status=c.status, reason=c.reason,
                                 message=c.message, last_transition_time=c.last_transition_time)
                    for c in view.conditions],
        abort_reason=view.abort_reason, pause_reason=view.pause_reason,
        revision=view.revision, stable_revision=view.stable_revision, image=view.image,
        paused=view.paused, generation=view.generation,
        observed_generation=view.observed_generation, pending_intents=view.pending_intents,
        not_observed=view.not_observed,
    )
    if view.observed_weights is not None:
        message.observed_weights.CopyFrom(_weights(view.observed_weights))
    if view.judgement is not None:
        message.judgement.CopyFrom(_judgement(view.judgement))
    return message


def _judgement(j: JudgementView) -> pb.Judgement:
    out = pb.Judgement(run=j.run, at=j.at, verdict=j.verdict, baseline=j.baseline)
    if j.score is not None:
        out.score = j.score
    for m in j.metrics:
        metric = out.metrics.add(name=m.name, verdict=m.verdict, direction=m.direction,
                                 canary_samples=m.canary_samples,
                                 baseline_samples=m.baseline_samples)
        for name in ("p_value", "effect_size", "canary_mean", "baseline_mean"):
            if getattr(m, name) is not None:
                setattr(metric, name, getattr(m, name))
    return out


def _judgement_view(j: pb.Judgement) -> JudgementView:
    def opt(m: pb.JudgeMetric, name: str) -> float | None:
        return getattr(m, name) if m.HasField(name) else None

    return JudgementView(
        j.run, j.at, j.verdict, j.score if j.HasField("score") else None, j.baseline,
        tuple(JudgeMetricView(m.name, m.verdict, m.direction, opt(m, "p_value"),
                              opt(m, "effect_size"), opt(m, "canary_mean"),
                              opt(m, "baseline_mean"), m.canary_samples, m.baseline_samples)
              for m in j.metrics))


def _measurement(m: MeasurementView) -> pb.Measurement:
    out = pb.Measurement(metric=m.metric, run=m.run, outcome=m.outcome, at=m.at)
    if m.value is not None:
        out.value = m.value
    return out


def from_message(message: pb.Rollout) -> RolloutView:
    seen = message.observed_weights
    observed = (WeightsView(seen.stable, seen.canary, seen.baseline)
                if message.HasField("observed_weights") else None)
    return RolloutView(
        name=message.name, namespace=message.namespace, phase=message.phase,
        step=message.step, total_steps=message.total_steps,
        weights=WeightsView(message.weights.stable, message.weights.canary,
                            message.weights.baseline),
        observed_weights=observed, not_observed=message.not_observed,
        measurements=tuple(MeasurementView(m.metric, m.run,
                                           m.value if m.HasField("value") else None,
                                           m.outcome, m.at) for m in message.measurements),
        message=message.message,
        conditions=tuple(ConditionView(c.type, c.status, c.reason, c.message,
                                       c.last_transition_time) for c in message.conditions),
        abort_reason=message.abort_reason, pause_reason=message.pause_reason,
        revision=message.revision, stable_revision=message.stable_revision,
        image=message.image, paused=message.paused, generation=message.generation,
        observed_generation=message.observed_generation,
        pending_intents=tuple(message.pending_intents),
        judgement=_judgement_view(message.judgement) if message.HasField("judgement") else None,
    )


def history_message(found: History) -> pb.HistoryResponse:
    return pb.HistoryResponse(
        rollout=to_message(found.rollout),
        revisions=[pb.Revision(role=r.role, revision=r.revision, image=r.image)
                   for r in found.revisions],
        events=[pb.Event(time=e.time, type=e.type, reason=e.reason, message=e.message)
                for e in found.events],
        audit=[pb.AuditEntry(time=a.time, action=a.action, by=a.by, via=a.via,
                             comment=a.comment, detail=a.detail) for a in found.audit])


def history_from_message(message: pb.HistoryResponse) -> History:
    return History(
        rollout=from_message(message.rollout),
        revisions=tuple(RevisionView(r.role, r.revision, r.image) for r in message.revisions),
        events=tuple(EventView(e.time, e.type, e.reason, e.message) for e in message.events),
        audit=tuple(AuditView(a.time, a.action, a.by, a.via, a.comment, a.detail)
                    for a in message.audit))
