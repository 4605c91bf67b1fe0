"""pynamodb models of the stack's DynamoDB tables (their definitions live in ``template.yaml``).

Table names come from the settings on first use (``bind()``), never at import, so tests and the
local stack can point everything at moto first. All keys start with the tenant.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    NumberSetAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from functions.common.batches import get_page
from functions.common.settings import settings

UNBOUND = "unbound"
# DynamoDB refuses numbers of a smaller magnitude than this ("Number underflow").
MIN_NUMBER_MAGNITUDE = 1e-130


def storable_number(value: float | None) -> float | None:
    """``value`` as a DynamoDB number attribute can hold it: tinier magnitudes become 0.

    Request validation caps how large numbers get; nothing stops them being tiny.

    >>> storable_number(1e-200), storable_number(-0.25), storable_number(None)
    (0.0, -0.25, None)
    """
    if value is None or value == 0 or abs(value) >= MIN_NUMBER_MAGNITUDE:
        return value
    return 0.0


class StoredModel(Model):
    """A pynamodb model whose ``batch_get`` backs off on unprocessed keys (``batches``)."""

    @classmethod
    def _batch_get_page(
        cls, keys_to_get: Any, consistent_read: Any, attributes_to_get: Any
    ) -> tuple[list[dict[str, Any]], None]:
        def fetch(keys: list[Any]) -> tuple[list[dict[str, Any]], list[Any] | None]:
            page, unprocessed = super(StoredModel, cls)._batch_get_page(
                keys, consistent_read, attributes_to_get
            )
            return list(page or []), unprocessed

        return get_page(fetch, list(keys_to_get), table=str(cls.Meta.table_name)), None


class PolicyItem(StoredModel):
    """A tenant's policy: its spec and the head of its model versions."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant
    sk = UnicodeAttribute(range_key=True)  # policy name
    spec = UnicodeAttribute()  # PolicySpec as JSON
    spec_version = NumberAttribute(default=1)
    head_version = NumberAttribute(default=0)
    updated_at = NumberAttribute(default=0)
    # Set when the policy is created: a policy deleted and created again under its name numbers
    # its model versions from 1 again, and a cached model of the old one must not pass for one.
    lineage = UnicodeAttribute(null=True)
    # Which versions a head's model holds the events of (``model_store.lineage``): versions
    # saved with a model that had learned nothing, and copies made by rollbacks [copy, source].
    model_roots = ListAttribute(null=True)  # type: ignore[var-annotated]
    model_copies = ListAttribute(null=True)  # type: ignore[var-annotated]
    # A spec change retrained from the decision log (``functions.common.retrain_service``): the
    # spec waiting to become current, the job, the next chunk it expects (none once the job
    # ended), its progress as shown (JSON) and where it got to (JSON).
    pending_spec = UnicodeAttribute(null=True)
    retrain_job = UnicodeAttribute(null=True)
    retrain_chunk = NumberAttribute(null=True)
    retrain_status = UnicodeAttribute(null=True)
    retrain_cursor = UnicodeAttribute(null=True)


class ModelVersionItem(StoredModel):
    """One immutable model version: an inline zlib blob or a pointer to an S3 object."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#policy
    version = NumberAttribute(range_key=True)
    blob = BinaryAttribute(null=True, legacy_encoding=False)
    s3_key = UnicodeAttribute(null=True)
    sha256 = UnicodeAttribute()
    size = NumberAttribute()
    created_at = NumberAttribute()
    examples_learned = NumberAttribute(default=0)
    events_learned = NumberAttribute(default=0)
    rolled_back_from = NumberAttribute(null=True)
    retrained = UnicodeAttribute(null=True)  # JSON: the log a spec change was retrained from


class ByPolicyIndex(GlobalSecondaryIndex["DecisionItem"]):
    """Decisions of one policy by time (export, metrics)."""

    class Meta:
        index_name = "by_policy"
        projection = AllProjection()

    policy_key = UnicodeAttribute(hash_key=True)
    ts = NumberAttribute(range_key=True)


class OpenEventsIndex(GlobalSecondaryIndex["DecisionItem"]):
    """Sparse index of events not yet learned, by when their reward wait ends (the sweep).

    It projects ``policy_key`` too, so the sweep can hand each due event to its policy's learner
    without reading the event."""

    class Meta:
        index_name = "open_events"
        projection = IncludeProjection(["policy_key"])

    open_shard = UnicodeAttribute(hash_key=True)
    closes_at = NumberAttribute(range_key=True)


class DecisionItem(StoredModel):
    """One event: the zlib-compressed decision record (inline, or in S3 when it is too large
    to inline) plus its reward and learning state."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#event_id
    policy_key = UnicodeAttribute()  # tenant#policy
    ts = NumberAttribute()
    record = BinaryAttribute(null=True, legacy_encoding=False)  # inline, or else:
    record_key = UnicodeAttribute(null=True)  # the S3 object of a record too large to inline
    slots = NumberAttribute()
    status = UnicodeAttribute(default="open")  # open | learned | expired | failed
    deferred = BooleanAttribute(default=False)
    activated = BooleanAttribute(default=True)
    activated_at = NumberAttribute(null=True)  # deferred events: when the app showed them
    rewards = ListAttribute(default=list)  # type: ignore[var-annotated]
    reward_ids = UnicodeSetAttribute(null=True)
    late_rewards = NumberAttribute(default=0)
    dropped_rewards = NumberAttribute(default=0)  # posted past the event's cap: counted only
    seen = NumberSetAttribute(null=True)  # positions reported seen (``impressions``); none: all
    late_impressions = NumberAttribute(null=True)  # reports after the event closed: counted only
    rev = NumberAttribute(default=0)  # bumped by every reward write (the learner's check)
    open_shard = UnicodeAttribute(null=True)
    closes_at = NumberAttribute(null=True)
    closed_at = NumberAttribute(null=True)  # when it was learned, expired or set aside
    failure_reason = UnicodeAttribute(null=True)  # why a failed event was set aside
    model_version = NumberAttribute(default=0)
    learned_version = NumberAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    by_policy = ByPolicyIndex()
    open_events = OpenEventsIndex()


class CatalogItem(StoredModel):
    """An item of a tenant's catalog (candidates may be sent as ids of these)."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant
    sk = UnicodeAttribute(range_key=True)  # item id
    features = UnicodeAttribute(default="{}")  # JSON object
    category = UnicodeAttribute(null=True)
    creator = UnicodeAttribute(null=True)
    created_at = NumberAttribute(null=True)
    updated_at = NumberAttribute(default=0)
    # The item's own embedding (float32, little-endian), for recommend's embedding source.
    embedding = BinaryAttribute(null=True, legacy_encoding=False)


class UserItem(StoredModel):
    """A user's interaction count (maturity segment), recent rewarded items and categories."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#user_id
    interactions = NumberAttribute(default=0)
    recent_categories = ListAttribute(default=list)  # type: ignore[var-annotated]
    # The last rewarded items, oldest first, as JSON [[item id, category, creator], ...]: one
    # string rather than a list of maps, which DynamoDB (and moto) parse value by value on
    # every read of the profile.
    rewarded = UnicodeAttribute(null=True)
    # Written before ``rewarded``: {"i": item id, "c": category, "r": creator} maps, still read.
    recent_rewarded = ListAttribute(null=True)  # type: ignore[var-annotated]
    version = VersionAttribute()  # every save is conditional on the version read


class CounterItem(StoredModel):
    """A counter cell: exploration budget spend or item popularity, sharded by key."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    served = NumberAttribute(default=0)
    explored = NumberAttribute(default=0)
    impressions = NumberAttribute(default=0)
    reward = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)


class SweepStateItem(StoredModel):
    """Where the sweep got to: due events up to ``watermark`` were handed to their learners,
    and when it last read every due event (a full pass), on the counters table."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # "sweep" (no tenant: the sweep serves them all)
    sk = UnicodeAttribute(range_key=True)  # "state"
    watermark = NumberAttribute(null=True)
    full_pass_at = NumberAttribute(null=True)


class IndexHeadItem(StoredModel):
    """A tenant's current catalog index build (``functions.common.index_store``), on the
    counters table: a missing item is a tenant not built yet, which rank reads cheaply."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#index (counter keys have three parts or more)
    sk = UnicodeAttribute(range_key=True)  # "head"
    version = NumberAttribute()
    head = UnicodeAttribute()  # the Head as JSON, with the objects of the build it replaced


class PersonalizerSettingsItem(StoredModel):
    """Settings of a Personalizer resource that Serendip's spec has no field for (echoed back by
    the Personalizer API, ``functions.common.personalizer``), on the counters table."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#personalizer
    sk = UnicodeAttribute(range_key=True)  # the policy's name
    settings = UnicodeAttribute()  # JSON object
    edited_at = NumberAttribute(default=0)


class PersonalizerEvaluationItem(StoredModel):
    """One offline evaluation made through the Personalizer API, on the counters table."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#evaluations#policy
    sk = UnicodeAttribute(range_key=True)  # the evaluation's id
    created_at = NumberAttribute()
    body = BinaryAttribute(legacy_encoding=False)  # zlib-compressed JSON of the evaluation


class ProgressItem(StoredModel):
    """A policy's learning progress in one time bucket (``functions.common.progress_store``),
    on the counters table."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#policy#progress
    sk = UnicodeAttribute(range_key=True)  # the bucket's start, unix seconds, zero-padded
    sums = UnicodeAttribute()  # JSON of ``bandit.evaluate.progress.ProgressSums.as_dict``
    expires_at = TTLAttribute(null=True)


class ChallengerItem(StoredModel):
    """A policy's challenger (``functions.common.challenger_service``), on the counters table."""

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # tenant#policy#challenger
    sk = UnicodeAttribute(range_key=True)  # "state"
    spec = UnicodeAttribute()  # the challenger's spec (JSON), named as the policy
    rule = UnicodeAttribute()  # JSON: margin, min_events, auto_promote
    status = UnicodeAttribute()  # running | promoted | rolled_back
    started_at = NumberAttribute()
    updated_at = NumberAttribute()
    standing = UnicodeAttribute()  # JSON: both estimates' sums, events learned
    judgement = UnicodeAttribute(null=True)  # the promotion rule's last answer
    blob = BinaryAttribute(null=True, legacy_encoding=False)  # zlib model, when small
    s3_key = UnicodeAttribute(null=True)  # else the model's object
    promoted_version = NumberAttribute(null=True)
    champion_spec = UnicodeAttribute(null=True)  # the spec it replaced (for a rollback)
    champion_version = NumberAttribute(null=True)  # the head it replaced
    version = VersionAttribute()


# What ``serendip keys list`` shows; never a secret, sealed or not.
KEY_LISTING_ATTRIBUTES = ["scopes", "name", "created_at", "revoked", "secret_info"]


class ByTenantIndex(GlobalSecondaryIndex["ApiKeyItem"]):
    """API keys of one tenant (listing, rotation, revocation): no secrets projected."""

    class Meta:
        index_name = "by_tenant"
        projection = IncludeProjection(KEY_LISTING_ATTRIBUTES)

    tenant = UnicodeAttribute(hash_key=True)


class SecretInfo(MapAttribute[str, object]):
    """What may be shown of a webhook secret: its id and when it was added."""

    secret_id = UnicodeAttribute(attr_name="id")
    created_at = NumberAttribute()


class SealedSecret(MapAttribute[str, object]):
    """A webhook secret encrypted with KMS for its key row (``functions.common.secret_box``)."""

    secret_id = UnicodeAttribute(attr_name="id")
    ciphertext = BinaryAttribute(legacy_encoding=False)


class ApiKeyItem(StoredModel):
    """An API key, stored only as its SHA-256, with its tenant, scopes and webhook secrets.

    ``secret_info`` and ``sealed_secrets`` list the same secrets in the same order (written
    together, under the ``secrets_rev`` check); ``webhook_secrets`` is the plain-text list of
    keys made before secrets were sealed: read, never written, dropped on the next rotation.
    """

    class Meta:
        table_name = UNBOUND

    pk = UnicodeAttribute(hash_key=True)  # sha256(key): the key id
    tenant = UnicodeAttribute()
    scopes = UnicodeSetAttribute()
    secret_info = ListAttribute(of=SecretInfo, default=list)
    sealed_secrets = ListAttribute(of=SealedSecret, default=list)
    secrets_rev = NumberAttribute(default=0)
    webhook_secrets = ListAttribute(null=True)  # type: ignore[var-annotated]
    name = UnicodeAttribute(default="")
    created_at = NumberAttribute(default=0)
    revoked = BooleanAttribute(default=False)
    # The policy the Personalizer API of this key serves (None: the tenant's "personalizer").
    policy = UnicodeAttribute(null=True)
    by_tenant = ByTenantIndex()


_TABLES: dict[type[Model], str] = {
    PolicyItem: "policies_table",
    ModelVersionItem: "models_table",
    DecisionItem: "decisions_table",
    CatalogItem: "items_table",
    UserItem: "users_table",
    CounterItem: "counters_table",
    SweepStateItem: "counters_table",
    IndexHeadItem: "counters_table",
    PersonalizerSettingsItem: "counters_table",
    PersonalizerEvaluationItem: "counters_table",
    ProgressItem: "counters_table",
    ChallengerItem: "counters_table",
    ApiKeyItem: "keys_table",
}


@cache
def bind() -> None:
    """Point every model at its table from the settings (once per process)."""
    current = settings()
    for model, attribute in _TABLES.items():
        model.Meta.table_name = getattr(current, attribute)
        model.Meta.region = current.region
        model._connection = None


@cache
def transaction_connection() -> Connection:
    """The connection transactions go through (one per process, like the models' own)."""
    return Connection(region=settings().region)


def unbind() -> None:
    """Forget the binding (tests that switch endpoints or table names)."""
    bind.cache_clear()
    transaction_connection.cache_clear()
    for model in _TABLES:
        model.Meta.table_name = UNBOUND
        model._connection = None
