"""Feature refs or a feature service, resolved into what to read from each view.

A request for on-demand features also reads their inputs: features the caller did not ask for are
read under hidden names (``__in__...``) and dropped once the on-demand functions have run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureService, FeatureView, OnDemandFeatureView
from featurestore.errors import RetrievalError

if TYPE_CHECKING:
    from featurestore.offline.retrieval import ViewRequest

Features = Sequence[str] | FeatureService | str


@dataclass(frozen=True)
class OnDemandRequest:
    """Features wanted from one on-demand view, their output names, and where its inputs are."""

    view: OnDemandFeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...]  # (input name, column of the retrieved features)


class FeatureRequests(list["ViewRequest"]):
    """Per-view requests (a list, as before on-demand views existed) plus the on-demand part."""

    def __init__(self, views: Sequence[ViewRequest], on_demand: Sequence[OnDemandRequest] = (),
                 hidden: Sequence[str] = (), service: FeatureService | None = None) -> None:
        super().__init__(views)
        self.on_demand: list[OnDemandRequest] = list(on_demand)
        self.hidden: list[str] = list(hidden)
        self.service = service  # the feature service asked for, if one was (its imputation applies)
        # How to read these online (online.retrieval.view_plans), worked out on first use and kept
        # with the requests: the feature server keeps resolved requests per request shape.
        self.online_plans: tuple[str, tuple[Any, ...]] | None = None
        # What the feature server works out once per request shape (its one-entity response writer).
        self.server_cache: dict[str, Any] = {}


@dataclass
class _Wanted:
    features: dict[str, list[str]] = field(default_factory=dict)  # view -> features, in order

    def add(self, view: str, feature: str, ref: str, *, user: bool = True) -> None:
        feats = self.features.setdefault(view, [])
        if feature in feats and user:
            raise RetrievalError(f"feature ref {ref!r} is listed twice")
        if feature not in feats:
            feats.append(feature)


def resolve_features(
    features: Features,
    views: dict[str, FeatureView],
    get_service: Callable[[str], FeatureService],
    *,
    full_feature_names: bool = False,
    on_demand: dict[str, OnDemandFeatureView] | None = None,
) -> FeatureRequests:
    """Refs or a feature service as per-view requests, given the applied views and services."""
    from featurestore.offline.retrieval import ViewRequest

    on_demand = on_demand or {}
    wanted = _Wanted()
    service: FeatureService | None = None
    if isinstance(features, FeatureService) or (isinstance(features, str) and ":" not in features):
        service = features if isinstance(features, FeatureService) else get_service(features)
        for proj in service.projections:
            target: FeatureView | OnDemandFeatureView | None = views.get(proj.view_name) or on_demand.get(
                proj.view_name)
            if target is None:
                raise RetrievalError(
                    f"feature service {service.name!r} uses feature view {proj.view_name!r}, which is "
                    "not applied; run 'featurestore apply'"
                )
            for feat in proj.features or target.feature_names:
                wanted.add(proj.view_name, feat, f"{proj.view_name}:{feat}")
    else:
        if isinstance(features, str):
            features = [features]
        if not features:
            raise RetrievalError("no features requested: pass refs like ['view:feature'] or a feature service")
        for ref in features:
            if not isinstance(ref, str) or ref.count(":") != 1:
                raise RetrievalError(f"feature ref {ref!r} must look like 'view:feature'")
            view_name, feat = ref.split(":")
            target = views.get(view_name) or on_demand.get(view_name)
            if target is None:
                known = sorted([*views, *on_demand])
                raise RetrievalError(f"feature ref {ref!r}: unknown feature view {view_name!r}; applied views: {known}")
            if feat not in target.feature_names:
                raise RetrievalError(
                    f"feature ref {ref!r}: view {view_name!r} has no feature {feat!r}; its features: "
                    f"{list(target.feature_names)}"
                )
            wanted.add(view_name, feat, ref)

    seen: dict[str, str] = {}
    outputs: dict[str, tuple[str, ...]] = {}
    for view_name, feats in wanted.features.items():
        outs = tuple(f"{view_name}__{f}" if full_feature_names else f for f in feats)
        for f, out in zip(feats, outs, strict=True):
            if out in seen:
                raise RetrievalError(
                    f"feature name {out!r} comes from both {seen[out]!r} and '{view_name}:{f}'; "
                    "pass full_feature_names=True to get view-prefixed names"
                )
            seen[out] = f"{view_name}:{f}"
        outputs[view_name] = outs

    # Plain views first: their requests, then the inputs of on-demand views under hidden names.
    per_view: dict[str, tuple[list[str], list[str]]] = {
        name: (list(feats), list(outputs[name])) for name, feats in wanted.features.items() if name in views
    }
    hidden: list[str] = []
    odfv_requests: list[OnDemandRequest] = []
    for name, feats in wanted.features.items():
        if name in views:
            continue
        odfv = on_demand[name]
        inputs: list[tuple[str, str]] = []
        for proj in odfv.view_inputs:
            if proj.view_name not in views:
                raise RetrievalError(
                    f"on-demand view {name!r} reads feature view {proj.view_name!r}, which is not applied"
                )
            req_feats, req_outs = per_view.setdefault(proj.view_name, ([], []))
            for feat in proj.features or views[proj.view_name].feature_names:
                column = f"__in__{proj.view_name}__{feat}"
                if column not in req_outs:
                    req_feats.append(feat)
                    req_outs.append(column)
                    hidden.append(column)
                inputs.append((feat, column))
        for fld in odfv.request_fields:
            inputs.append((fld.name, fld.name))
        odfv_requests.append(OnDemandRequest(odfv, tuple(feats), outputs[name], tuple(inputs)))
    requests = [ViewRequest(views[n], tuple(f), tuple(o)) for n, (f, o) in per_view.items()]
    return FeatureRequests(requests, odfv_requests, hidden, service)
