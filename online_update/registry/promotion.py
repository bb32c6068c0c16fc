"""Changing the active model version: the auto-promotion rule, the switch, the announcement.

``ModelRegistry`` (online_update.registry) stores versions; this module says when a
version should go live (``decide``), how the switch happens (two Lua scripts, so the
pointer, the statuses, the activation history and the announcement change in one atomic
step) and how servers hear about it (``ActiveChange`` on ``<prefix>active``, read with
``ActiveSubscription``).

The auto-promotion rule, in full (``decide``):

1. Nothing is active: promote. A serving replica with no model is worse than any model.
2. The active version has no usable value for the policy's metric (missing, ``None`` or
   NaN, e.g. it was published before that task saw a positive): promote, because there
   is nothing to compare against and the newer version has seen more data.
3. The candidate has no usable value but the active one has: keep the candidate a
   candidate. Promoting blind would throw away a version that is known to work.
4. Both have a value: promote unless the candidate is worse than the active version by
   *more than* ``margin`` (an absolute difference in the metric's units). With
   ``higher_is_better`` that means ``candidate < active - margin`` keeps it a candidate;
   otherwise ``candidate > active + margin`` does.

The margin is a tolerance, not a required improvement: online metrics are noisy windows
over the most recent examples, and after drift the newest model is usually the one to
serve even when its window looks slightly worse. A clear regression still stops it.

``ModelRegistry.maybe_promote`` applies it with a compare-and-set on the active pointer,
so a promotion decided against a version that was replaced meanwhile is re-decided.

>>> policy = PromotionPolicy(metric="click.auc", margin=0.01)
>>> decide({"click.auc": 0.705}, {"click.auc": 0.71}, policy).promote
True
>>> decide({"click.auc": 0.69}, {"click.auc": 0.71}, policy).promote
False
>>> decide({"click.auc": None}, None, policy).reason
'nothing is active'
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from types import TracebackType

import redis
from driftrec.core import InfraError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ACTIVATE_SCRIPT",
    "ROLLBACK_SCRIPT",
    "ActiveChange",
    "ActiveSubscription",
    "Decision",
    "PromotionPolicy",
    "decide",
]

_log = logging.getLogger(__name__)

# KEYS: none (single-instance Redis). ARGV: prefix, version, expected active ("*" = any,
# "" = none), reason, ts, history limit, event kind, events max length. Returns {outcome,
# previous active or ""}. The switch is recorded in the ``events`` stream in the same step,
# so the history of switches misses none, whoever made them.
ACTIVATE_SCRIPT = """
local p, version, expected = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('GET', p .. 'active') or ''
if expected ~= '*' and expected ~= current then return {'conflict', current} end
if redis.call('EXISTS', p .. 'version:' .. version) == 0 then return {'missing', current} end
if current == version then return {'noop', current} end
redis.call('SET', p .. 'active', version)
redis.call('HSET', p .. 'version:' .. version, 'status', 'active')
local previous = cjson.null
if current ~= '' then
  previous = current
  redis.call('HSET', p .. 'version:' .. current, 'status', 'retired', 'inactive_since', ARGV[5])
  redis.call('LPUSH', p .. 'history', current)
  redis.call('LTRIM', p .. 'history', 0, tonumber(ARGV[6]) - 1)
end
redis.call('PUBLISH', p .. 'active', cjson.encode(
  {version = version, previous = previous, reason = ARGV[4], ts = ARGV[5]}))
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[8], '*', 'kind', ARGV[7],
  'version', version, 'previous', current, 'reason', ARGV[4])
return {'ok', current}
"""

# ARGV: prefix, expected history head, reason, ts, events max length. Pops the head and
# activates it.
ROLLBACK_SCRIPT = """
local p, target = ARGV[1], ARGV[2]
local head = redis.call('LINDEX', p .. 'history', 0)
if not head then return {'empty', ''} end
if head ~= target then return {'conflict', head} end
redis.call('LPOP', p .. 'history')
local current = redis.call('GET', p .. 'active') or ''
redis.call('SET', p .. 'active', target)
redis.call('HSET', p .. 'version:' .. target, 'status', 'active')
local previous = cjson.null
if current ~= '' and current ~= target then
  previous = current
  redis.call('HSET', p .. 'version:' .. current, 'status', 'rejected', 'inactive_since', ARGV[4])
end
redis.call('PUBLISH', p .. 'active', cjson.encode(
  {version = target, previous = previous, reason = ARGV[3], ts = ARGV[4]}))
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[5], '*', 'kind', 'rollback',
  'version', target, 'previous', current, 'reason', ARGV[3])
return {'ok', current}
"""


class PromotionPolicy(BaseModel):
    """Which metric decides a promotion, which way is better, and how much regression is tolerated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The learner's summary names metrics "<task>.<metric>" (see online_update.metrics),
    # so the default is "click.auc", not "click_auc".
    metric: str = Field("click.auc", min_length=1, description="Key in VersionInfo.metrics.")
    higher_is_better: bool = Field(True, description="False for losses and errors (e.g. MAE).")
    margin: float = Field(
        0.01, ge=0.0, allow_inf_nan=False, description="Tolerated regression, absolute units."
    )


class Decision(BaseModel):
    """The outcome of ``decide`` and a one-line reason an operator can read."""

    model_config = ConfigDict(frozen=True)

    promote: bool
    reason: str


def _value(metrics: Mapping[str, float | None], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or math.isnan(value):
        return None
    return float(value)


def decide(
    candidate: Mapping[str, float | None],
    active: Mapping[str, float | None] | None,
    policy: PromotionPolicy,
) -> Decision:
    """Apply the promotion rule to the candidate's and the active version's metrics."""
    if active is None:
        return Decision(promote=True, reason="nothing is active")
    name = policy.metric
    current = _value(active, name)
    if current is None:
        return Decision(promote=True, reason=f"active version has no {name} to compare")
    new = _value(candidate, name)
    if new is None:
        return Decision(promote=False, reason=f"candidate has no {name}; active has {current:.4g}")
    if policy.higher_is_better:
        worse = new < current - policy.margin
    else:
        worse = new > current + policy.margin
    verdict = "worse than" if worse else "within margin of or better than"
    return Decision(
        promote=not worse,
        reason=f"{name} {new:.4g} {verdict} active {current:.4g} (margin {policy.margin:g})",
    )


class ActiveChange(BaseModel):
    """One switch of the active version, as published on the ``<prefix>active`` channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    previous: str | None
    reason: str
    ts: AwareDatetime


class ActiveSubscription:
    """Active-version changes as they happen; one per consuming thread (a PubSub is not shared).

    Pub/sub is at-most-once: changes made while disconnected are lost, so a server should
    also compare ``ModelRegistry.active_version_name()`` now and then. From asyncio, call
    ``await asyncio.to_thread(subscription.poll, 1.0)``.
    """

    def __init__(self, client: redis.Redis, channel: str, *, confirm_s: float = 5.0) -> None:
        # redis-py before 8.2 leaves pubsub() unannotated.
        self.pubsub = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        self.pubsub.subscribe(channel)
        # Wait for Redis to confirm, so a change made right after this returns is seen.
        deadline = time.monotonic() + confirm_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "subscribe":
                return
        self.pubsub.close()
        raise InfraError(
            f"Redis did not confirm the subscription to {channel} within {confirm_s}s: "
            "check the Redis server (`driftrec status`)"
        )

    def poll(self, timeout: float = 1.0) -> ActiveChange | None:
        """The next change, or None if none arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            message = self.pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "message":
                try:
                    return ActiveChange.model_validate_json(message["data"])
                except ValidationError as error:
                    _log.warning("ignoring a malformed active-change message: %s", error)
            elif remaining == 0.0:
                return None

    def __iter__(self) -> Iterator[ActiveChange]:
        """Changes as they come, forever (blocks between them); break out of the loop to stop."""
        while True:
            change = self.poll(1.0)
            if change is not None:
                yield change

    def close(self) -> None:
        self.pubsub.close()

    def __enter__(self) -> ActiveSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
