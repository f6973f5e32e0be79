"""The webhook payload as Alertmanager sends it (version 4), validated leniently per alert.

Unknown fields are ignored (newer Alertmanagers add `notification_reason`, `routeLabels`);
`version`, `groupKey` and `fingerprint` may be missing (older ones), in which case the
fingerprint is computed from the sorted label set.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.errors import PayloadError


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit fingerprint of a label set (sorted names and values)."""
    h = hashlib.sha256()
    for name in sorted(labels):
        h.update(name.encode())
        h.update(b"\xff")
        h.update(labels[name].encode())
        h.update(b"\xff")
    return h.hexdigest()[:16]


# Bounds on what one alert may carry: labels and annotations are text anyone who can fire an
# alert controls. Past them an alert is rejected (labels) or its annotation cut (annotations).
MAX_LABELS = 128
MAX_LABEL_VALUE = 4096
MAX_ANNOTATIONS = 64
MAX_ANNOTATION_VALUE = 16384
MAX_NAME = 256


def _clean(text: str) -> str:
    """NUL bytes cannot go into argv or the environment: replaced by U+FFFD."""
    return text.replace("\x00", "\ufffd")


class Alert(BaseModel):
    """One alert of a notification; `ends_at` is None while it has no end (0001-01-01)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"{len(v)} labels; at most {MAX_LABELS}")
        for name, value in v.items():
            if len(name) > MAX_NAME:
                raise ValueError(f"a label name is {len(name)} characters long; at most {MAX_NAME}")
            if len(value) > MAX_LABEL_VALUE:
                raise ValueError(
                    f"label {name[:64]!r} is {len(value)} characters long; at most {MAX_LABEL_VALUE}"
                )
        if any("\x00" in k or "\x00" in val for k, val in v.items()):
            return {_clean(k): _clean(val) for k, val in v.items()}
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_ANNOTATIONS:
            raise ValueError(f"{len(v)} annotations; at most {MAX_ANNOTATIONS}")
        out = {}
        for name, value in v.items():
            if len(name) > MAX_NAME:
                raise ValueError(f"an annotation name is {len(name)} characters long; at most {MAX_NAME}")
            if len(value) > MAX_ANNOTATION_VALUE:
                cut = len(value) - MAX_ANNOTATION_VALUE
                value = value[:MAX_ANNOTATION_VALUE] + f" [... {cut} characters cut]"
            out[_clean(name)] = _clean(value)
        return out

    @field_validator("ends_at")
    @classmethod
    def _no_end(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.year <= 1:
            return None
        return v

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    def model_post_init(self, context: Any, /) -> None:
        """Fill in a fingerprint from the labels when Alertmanager did not send one."""
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", label_fingerprint(self.labels))

    @property
    def name(self) -> str:
        """The alertname label ("" when missing)."""
        return self.labels.get("alertname", "")

    def context(self) -> dict[str, Any]:
        """The `alert` object that templates see: plain data, never templates."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "fingerprint": self.fingerprint,
            "startsAt": self.starts_at.isoformat().replace("+00:00", "Z"),
            "endsAt": self.ends_at.isoformat().replace("+00:00", "Z") if self.ends_at else "",
            "generatorURL": self.generator_url,
        }


class PayloadHeader(BaseModel):
    """The group-level fields of a notification; alerts are validated one by one elsewhere."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    version: str = "4"
    receiver: str = ""
    status: str = ""
    group_key: str = Field(default="", alias="groupKey")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")


class RejectedAlert(BaseModel):
    """An alert of the payload that could not be read, and why."""

    model_config = ConfigDict(frozen=True)

    index: int
    error: str


class WebhookPayload(BaseModel):
    """A parsed notification: the valid alerts, plus the ones rejected with a reason."""

    model_config = ConfigDict(frozen=True)

    header: PayloadHeader
    alerts: list[Alert]
    rejected: list[RejectedAlert] = Field(default_factory=list)


def _first_error(exc: ValidationError, prefix: str) -> PayloadError:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return PayloadError(f"{prefix}.{loc}" if loc else prefix, err["msg"])


def parse_payload(body: Any) -> WebhookPayload:
    """Validate a decoded JSON body. PayloadError for a bad envelope or when no alert is valid.

    An alert that is malformed is reported in `rejected` and the others are kept, so one odd
    alert never loses the valid ones beside it.
    """
    if not isinstance(body, dict):
        raise PayloadError("(body)", f"expected a JSON object, got {type(body).__name__}")
    if "alerts" not in body:
        raise PayloadError("alerts", "field required")
    raw_alerts = body["alerts"]
    if not isinstance(raw_alerts, list):
        raise PayloadError("alerts", f"expected a list, got {type(raw_alerts).__name__}")
    try:
        header = PayloadHeader.model_validate(body)
    except ValidationError as e:
        raise _first_error(e, "payload") from e
    alerts: list[Alert] = []
    rejected: list[RejectedAlert] = []
    first_error: PayloadError | None = None
    for i, raw in enumerate(raw_alerts):
        try:
            alerts.append(Alert.model_validate(raw))
        except ValidationError as e:
            err = _first_error(e, f"alerts[{i}]")
            first_error = first_error or err
            rejected.append(RejectedAlert(index=i, error=str(err)))
    if first_error is not None and not alerts:
        raise first_error
    return WebhookPayload(header=header, alerts=alerts, rejected=rejected)
