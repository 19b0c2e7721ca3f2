"""Response models of the read API: they document the answers on ``/docs`` (OpenAPI) and the tests
validate real answers against them. Gold columns keep their contract names (docs/DATA_CONTRACTS.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["Normal", "Alerta", "Anormal"]


class Open(BaseModel):
    """Rows of gold tables: the contract's columns, plus any column added later (additive evolution)."""

    model_config = ConfigDict(extra="allow")


class StorageHealth(BaseModel):
    backend: Literal["local", "s3", "dual"] = Field(description="Where the layout lives.")
    reachable: bool = Field(description="The data root could be listed just now.")
    error: str | None = Field(None, description="Why it could not (no credential is ever shown).")


class ClientHealth(BaseModel):
    published: bool = Field(description="The client has a manifest listing its gold tables.")
    published_at: str | None = Field(None, description="`updated_at` of the snapshot served (UTC).")
    age_seconds: float | None = Field(None, description="Seconds since that publication.")
    limits_version: str | None = Field(None, description="Limits version of the snapshot served.")
    serving: Literal["current", "previous", "none"] = Field(
        description="`current`: the newest manifest; `previous`: an older consistent snapshot, because the "
        "newest is half-published or storage failed; `none`: nothing consistent to serve yet."
    )
    consistent: bool = Field(description="The newest manifest and the files it names agree.")
    manifest_sha256: str | None = Field(None, description="sha256 of the manifest the snapshot came from.")
    problems: list[str] = Field(default_factory=list, description="Why the newest manifest is not served.")
    error: str | None = Field(None, description="Storage error of the last manifest check.")


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="`unavailable` (HTTP 503): storage unreachable; `degraded`: a client of the key is "
        "served from a previous snapshot or not at all."
    )
    storage: StorageHealth
    checked_at: str = Field(description="When this answer was computed (UTC).")
    clients: dict[str, ClientHealth] | None = Field(
        None, description="Per client of the caller's key; absent without a key."
    )


class ClientInfo(BaseModel):
    client: str = Field(description="Client key (`cda`).")
    display_name: str
    published: bool = Field(description="Gold is published and consistent.")
    published_at: str | None = None
    limits_version: str | None = None


class ClientList(BaseModel):
    clients: list[ClientInfo] = Field(description="The clients the caller's key may read.")


class SnapshotInfo(BaseModel):
    manifest_sha256: str = Field(description="The manifest this answer was read from.")
    published_at: str | None = Field(None, description="Its `updated_at` (UTC).")
    limits_version: str | None = None
    serving: Literal["current", "previous"] = Field(
        description="`previous`: the newest publication is not consistent yet (see /health)."
    )


class ComponentStatus(Open):
    component: str | None = None
    status: Status | None = None
    severity_score: float | None = None
    sample_date: str | None = None
    sampleNumber: str | None = None


class Machine(Open):
    """One row of `machine_status_current`; `components` is its parsed `component_status`."""

    client: str
    unitId: str
    machineName: str | None = None
    machineModel: str | None = None
    machine_status: Status
    machine_score: float
    latest_sample_date: str
    total_components: int
    components_normal: int
    components_alerta: int
    components_anormal: int
    priority: float = Field(description="Higher is more urgent; the list is sorted by it.")
    limits_version: str
    machine_ai_recommendation: str | None = None
    machine_ai_source: str | None = None
    components: list[ComponentStatus]


class Page(BaseModel):
    client: str
    snapshot: SnapshotInfo
    total: int = Field(description="Rows matching the filters.")
    offset: int
    limit: int
    next: str | None = Field(description="URL of the next page (same filters), or null on the last page.")


class MachinePage(Page):
    items: list[Machine]


class Breach(Open):
    essay: str
    group: str | None = None
    value: float | None = None
    limit: float | None = None
    level: str | None = None
    direction: str | None = None
    kind: str | None = None
    points: float | None = None


class Report(Open):
    """One classified report: every silver/gold column except the essays (nested in `essays`, only the
    measured ones), `breached_essays` (parsed into `breaches`) and `censoredEssays` (`censored`)."""

    client: str
    sampleNumber: str
    sampleDate: str
    unitId: str
    componentName: str
    componentNameNormalized: str
    report_status: Status
    severity_score: float
    essays_broken: int
    limits_version: str
    ai_recommendation: str | None = None
    ai_source: str | None = None
    essays: dict[str, float] = Field(description="Measured essays: catalog key → value.")
    breaches: list[Breach]
    censored: dict[str, str] = Field(description="Censored readings: essay → `<` or `>`.")


class ReportPage(Page):
    items: list[Report]


class LimitLevels(BaseModel):
    kind: str
    direction: str
    stratum: str
    marginal: float | None
    condemning: float | None
    critical: float | None
    comparison: str | None = None


class TrendPoint(BaseModel):
    sampleDate: str
    sampleNumber: str
    value: float
    report_status: Status


class TrendSeries(BaseModel):
    componentName: str
    essay: str = Field(description="Catalog key of the breached essay.")
    essay_name: str
    unit: str
    breaches: list[Breach] = Field(description="Its breaches in the compartment's latest report.")
    limits: list[LimitLevels] = Field(description="Level and trend limits of machine × component × essay.")
    points: list[TrendPoint] = Field(description="Oldest first, the last `history` readings.")


class ComponentDetail(BaseModel):
    componentName: str
    componentNameNormalized: str | None
    status: Status | None
    severity_score: float | None
    latest_report: Report


class MachineDetail(BaseModel):
    client: str
    snapshot: SnapshotInfo
    machine: Machine
    components: list[ComponentDetail] = Field(description="Most severe first.")
    trends: list[TrendSeries]


class LimitRow(Open):
    client: str
    machine: str
    component: str
    stratum: str
    essay: str
    kind: str
    direction: str
    marginal: float | None
    condemning: float | None
    critical: float | None
    sample_count: int
    version: str


class Limits(BaseModel):
    client: str
    version: str = Field(description="The version of these rows.")
    current_version: str | None = Field(description="The version the published reports use.")
    versions: list[str] = Field(description="Every version stored for the client.")
    total: int
    rows: list[LimitRow]


class Problem(BaseModel):
    detail: str
