"""Cloud prices you can refresh: import SkyPilot's catalog CSVs, keep the user's own rates, and
say how old every price an answer rests on is.

SkyPilot's public catalog (github.com/skypilot-org/skypilot-catalog, catalogs/v*/<cloud>/vms.csv)
is read by header: InstanceType, AcceleratorName, AcceleratorCount, Price, SpotPrice, Region
(other columns are ignored). Prices there are per instance, so they are divided by the
accelerator count; SkyPilot's accelerator names are mapped to catalog ids by
catalog/skypilot_names.csv (an instance-type pattern settles names that cover two parts, such as
Lambda's "H100" for PCIe and SXM). One row is kept per (accelerator, cloud, tier): the cheapest
region, or the cheapest of the regions asked for.

Three layers, later ones winning for the same (accelerator, provider, tier, term, region):
catalog/cloud_prices.csv (hand-sourced rows), catalog/prices_snapshot.csv (this importer run over
the snapshot in catalog/skypilot/, dated by its commit), and the user's file
($GPUPLAN_HOME/prices.csv, default ~/.config/gpuplan/prices.csv) written by `gpuplan prices import`.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import functools
import io
import os
import re
from datetime import date
from pathlib import Path

from catalog import DATA_DIR
from recommender.errors import GpuplanError
from recommender.spec import CLOUD_PRICE_RANGE_USD

STALE_DAYS = 90  # an answer warns when a price it used is older than this
FIELDS = ["accelerator", "provider", "tier", "region", "term_months", "price_usd_per_gpu_hour", "source",
          "as_of", "as_of_kind", "notes"]
SNAPSHOT = DATA_DIR / "prices_snapshot.csv"
SNAPSHOT_DIR = DATA_DIR / "skypilot"
NEEDED = ("AcceleratorName", "AcceleratorCount", "Price")


MARKETS = ("global", "china", "all")
_MARKET: list[str] = ["global"]


def market() -> str:
    """The price market this command plans in (--market): global, china or all."""
    return _MARKET[-1]


def explicit() -> bool:
    """True inside a `shopping_in` block (a --market given on the command line)."""
    return len(_MARKET) > 1


@contextlib.contextmanager
def shopping_in(name: str | None):
    """Within the block, prices come from this market (a part sold in no other market keeps its
    own: H800 and H20 are priced from China's market even when planning globally)."""
    m = str(name or "global").strip().lower()
    if m not in MARKETS:
        raise GpuplanError("market", name, f"must be one of {', '.join(MARKETS)}")
    _MARKET.append(m)
    try:
        yield
    finally:
        _MARKET.pop()


_NAMED: list[frozenset] = [frozenset()]


@contextlib.contextmanager
def naming(ids):
    """Within the block, these accelerators were named by the user (--gpus, --gpu, a scenario's
    constraints.gpus): in the global market, a part priced only in China keeps China's prices."""
    _NAMED.append(frozenset(ids or ()))
    try:
        yield
    finally:
        _NAMED.pop()


def in_market(rows: list) -> list:
    """The rows of the current market. Global: global rows only, except that a part the user
    named and that only China's market prices (H800, H20, Ascend 910B, MLU370) keeps China's
    rows; an unnamed one is unpriced there (plan it with --market china). China: China's rows,
    and for a part China's market does not price, its global rows. All: both. Second-hand rows
    are never used."""
    rows = [r for r in rows if r.market != "used"]
    if market() == "all" or not rows:
        return rows
    if market() == "global":
        mine = [r for r in rows if r.market == "global"]
        if not mine and rows[0].accelerator in _NAMED[-1] and china_only(rows[0].accelerator):
            return rows
        return mine
    return [r for r in rows if r.market == "china"] or rows


def unpriced_note(ids, what: str = "not chosen where cost matters") -> list[str]:
    """The planner's note on unpriced parts, naming those priced only in China's market."""
    ids = sorted(ids)
    if not ids:
        return []
    from recommender import catalog

    china = [a for a in ids if market() == "global" and china_only(a) and a not in _NAMED[-1]]
    # a purchase price without a TDP: buying cannot be costed (energy and colocation scale with it)
    no_tdp = [a for a in ids if a not in china and catalog.accelerator(a).tdp_w is None
              and catalog.purchase_for(a) is not None]
    rest = [a for a in ids if a not in china and a not in no_tdp]
    out = []
    if rest:
        out.append(f"no published price, so {what}: " + ", ".join(rest))
    if no_tdp:
        out.append(f"a purchase price but no TDP (tdp_w), so buying cannot be costed and is {what}: "
                   + ", ".join(no_tdp))
    if china:
        out.append(f"priced only in China's market, so {what} here (plan them with --market china): "
                   + ", ".join(china))
    return out


def china_only(accelerator_id: str) -> bool:
    """True where every price row of the part is China's market."""
    from recommender import catalog

    rows = [r for r in [*catalog.cloud_prices(), *catalog.purchase_prices()]
            if r.accelerator == accelerator_id and r.market != "used"]
    return bool(rows) and all(r.market == "china" for r in rows)


def user_dir() -> Path:
    """Where gpuplan keeps what a user tells it ($GPUPLAN_HOME, else the XDG config folder)."""
    home = os.environ.get("GPUPLAN_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gpuplan"


def user_file() -> Path:
    return user_dir() / "prices.csv"


@functools.cache
def name_map() -> list[dict]:
    """catalog/skypilot_names.csv: (cloud glob, SkyPilot name, instance-type glob) -> catalog id."""
    with open(DATA_DIR / "skypilot_names.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if not r["cloud"].startswith("#")]


def gpu_memory_gib(gpu_info: str) -> float | None:
    """Per-GPU memory from SkyPilot's GpuInfo column ("{'Gpus': [{... 'SizeInMiB': 81559}}], ...}")."""
    m = re.search(r"'SizeInMiB':\s*([0-9.]+)", gpu_info or "")
    return float(m.group(1)) / 1024 if m else None


def map_name(cloud: str, name: str, instance: str, memory_gib: float | None = None) -> str | None:
    """The catalog id of SkyPilot's accelerator name on this cloud (None: not in the catalog). A
    mapping row with a memory figure matches only GPUs within 8% of it (GpuInfo's memory)."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    for r in name_map():
        if not (fnmatch.fnmatch(cloud, r["cloud"]) and fnmatch.fnmatch(key, r["skypilot_name"].lower())
                and fnmatch.fnmatch(instance.lower(), r["instance_type"].lower() or "*")):
            continue
        if r["memory_gib"] and (memory_gib is None or abs(memory_gib / float(r["memory_gib"]) - 1) > 0.08):
            continue
        return r["accelerator"] or None
    return None


GCP_NOT_OFFERED = 700.0  # SkyPilot's GCP catalog writes 700.0 where a region does not really offer it


@functools.cache
def _gcp_hosts() -> dict[tuple[str, int], str]:
    with open(DATA_DIR / "skypilot_gcp_hosts.csv", newline="") as f:
        return {(r["accelerator_name"].lower(), int(r["count"])): r["instance_type"] for r in csv.DictReader(f)}


def gcp_host(name: str, count: float) -> str | None:
    """The GCP machine type that carries `count` of this GPU (catalog/skypilot_gcp_hosts.csv)."""
    return _gcp_hosts().get((name.strip().lower(), int(count)))


def _number(text) -> float | None:
    try:
        x = float(str(text).strip())
    except ValueError:
        return None
    return x if x > 0 else None


def _chips(cloud: str, name: str, count: float) -> float:
    """Accelerators per priced unit. SkyPilot prices a GCP TPU slice ("tpu-v5p-8") as one unit:
    v2-v5p names count TensorCores (2 per chip), v5e/v6e ("litepod") names count chips."""
    m = re.fullmatch(r"tpu-(v\d+[a-z]*?)(litepod)?-(\d+)", name.strip().lower())
    if cloud == "gcp" and m:
        cores = int(m.group(3))
        return float(cores if m.group(2) or m.group(1) in ("v5e", "v6e") else cores / 2)
    return count


def read_vms(text: str, cloud: str, as_of: date, source: str, regions: tuple[str, ...] = (),
             as_of_kind: str = "published", skipped: list[str] | None = None) -> list[dict]:
    """SkyPilot vms.csv text -> one price row per (accelerator, tier): the cheapest region.
    `as_of_kind` "read": `as_of` is when a copy of unknown date was read, not the prices' own date.
    `skipped` collects the prices refused as broken (not a positive number, or outside
    CLOUD_PRICE_RANGE_USD per GPU-hour); an empty cell is no offer, not a broken one."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
    if missing:
        raise GpuplanError("path", source, f"not a SkyPilot vms.csv: no column {', '.join(missing)}")
    rows = list(reader)
    hosts = {(r.get("InstanceType"), r.get("Region")): r for r in rows
             if cloud == "gcp" and r.get("InstanceType") and not r.get("AcceleratorName")}
    best: dict[tuple, dict] = {}
    for row in rows:
        name, instance, region = row.get("AcceleratorName") or "", row.get("InstanceType") or "", row.get("Region") or ""
        count = _number(row.get("AcceleratorCount"))
        if not name or not count or (regions and not any(fnmatch.fnmatch(region, g) for g in regions)):
            continue
        acc = map_name(cloud, name, instance, gpu_memory_gib(row.get("GpuInfo") or ""))
        if acc is None:
            continue
        chips = _chips(cloud, name, count)
        host = None
        if cloud == "gcp" and not instance and not name.lower().startswith("tpu"):
            # GCP prices GPUs apart from the VM they attach to: add the machine type's price
            host = hosts.get((gcp_host(name, count), region))
            if host is None:
                continue  # the machine type is not in the file: the VM's price cannot be rebuilt
        for tier, column in (("on_demand", "Price"), ("spot", "SpotPrice")):
            raw = str(row.get(column) or "").strip()
            price = _number(raw)
            if price is None and raw and skipped is not None:
                skipped.append(f"{acc} {tier} {raw} ({instance or name}, {region or 'no region'})")
            if price is None or (cloud == "gcp" and price >= GCP_NOT_OFFERED):
                continue
            if tier == "spot" and price >= (_number(row.get("Price")) or float("inf")):
                continue  # a "spot" price at or above on-demand is no spot offer (seen in Azure, RunPod rows)
            if host is not None:
                extra = _number(host.get(column))
                if extra is None and _number(host.get("Price")) is not None:
                    continue  # the host has no such tier
                price += extra or 0.0
            per_gpu = round(price / chips, 6)
            if not CLOUD_PRICE_RANGE_USD[0] <= per_gpu <= CLOUD_PRICE_RANGE_USD[1]:
                if skipped is not None:   # an absurd price (1e300, inf) is a broken row, not an offer
                    skipped.append(f"{acc} {tier} {per_gpu:g} per GPU-hour ({instance or name}, {region or 'no region'})")
                continue
            key = (acc, tier)
            if key not in best or (per_gpu, region) < (best[key]["price_usd_per_gpu_hour"], best[key]["region"]):
                best[key] = dict(accelerator=acc, provider=cloud, tier=tier, region=region, term_months="",
                                 price_usd_per_gpu_hour=per_gpu, source=source, as_of=as_of.isoformat(),
                                 as_of_kind=as_of_kind,
                                 notes=f"{instance or (host or {}).get('InstanceType') or name} x{count:g} at "
                                       f"{price:g} $/h per instance{' (GPUs + machine type)' if host else ''}; "
                                       f"cheapest {'of ' + ','.join(regions) if regions else 'region'}")
    return sorted(best.values(), key=lambda r: (r["accelerator"], r["tier"]))


def _files(path: Path) -> list[tuple[str, Path]]:
    """(cloud, vms.csv) pairs: one file (its folder names the cloud) or a folder of <cloud>/vms.csv."""
    if not path.exists():
        raise GpuplanError("path", str(path), "no such file or folder")
    if path.is_file():
        return [(path.parent.name.lower() or "custom", path)]
    found = sorted(path.glob("*/vms.csv")) or sorted(path.glob("vms.csv"))
    if not found:
        raise GpuplanError("path", str(path), "no vms.csv in it (expected <cloud>/vms.csv, SkyPilot's layout)")
    return [(f.parent.name.lower(), f) for f in found]


def import_catalog(path: str | Path, as_of: date | None = None, regions: tuple[str, ...] = (),
                   source: str | None = None, skipped: list[str] | None = None) -> list[dict]:
    """Price rows from a SkyPilot vms.csv or a folder of them (dated `as_of`, else the file's date)."""
    rows = []
    for cloud, f in _files(Path(path)):
        try:
            text = f.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise GpuplanError("path", str(f), f"cannot read ({exc.__class__.__name__})") from None
        when = as_of or date.fromtimestamp(f.stat().st_mtime)
        rows += read_vms(text, cloud, when, source or f"SkyPilot catalog layout: {f}", regions, skipped=skipped)
    return rows


def snapshot_rows() -> list[dict]:
    """The importer over the shipped snapshot (catalog/skypilot/<cloud>/vms.csv), each cloud sourced
    by catalog/skypilot/sources.yaml: the catalog path and commit it was read at, and the date of
    that commit where known, else the date it was read (marked as such)."""
    import yaml

    meta = yaml.safe_load((SNAPSHOT_DIR / "sources.yaml").read_text())
    rows = []
    for cloud, info in sorted(meta["clouds"].items()):
        f = SNAPSHOT_DIR / cloud / "vms.csv"
        dated = info.get("commit_date")
        when = date.fromisoformat(str(dated or meta["read"]))
        src = (f"SkyPilot catalog {info['path']} @ {info['commit'][:12]} "
               f"({'committed ' + str(dated) if dated else 'commit date unknown, read ' + str(meta['read'])}), "
               f"via catalog/skypilot/{cloud}/vms.csv")
        rows += read_vms(f.read_text(), cloud, when, src, as_of_kind="published" if dated else "read")
    return rows


def write_rows(rows: list[dict], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def save_user_rows(rows: list[dict]) -> Path:
    """Add imported rows to the user's file; a provider imported again replaces its old rows."""
    target = user_file()
    providers = {r["provider"] for r in rows}
    kept = [r for r in read_rows(target) if r.get("provider") not in providers]
    write_rows(kept + rows, target)
    return target


def age_days(as_of: date, today: date | None = None) -> int:
    return ((today or date.today()) - as_of).days


def price_label(item) -> str:
    """How an answer names a plan's (or fleet part's) price row: 'b200 spot runpod', 'h100-sxm buy'."""
    where = "" if item.acquisition in ("buy", "owned") or not item.provider else f" {item.provider}"
    return f"{item.accelerator} {item.acquisition}{where}"


def age_notes(items) -> list[str]:
    """What the answer's prices rest on, with their dates, and a warning for any older than
    STALE_DAYS or of unknown date. `items`: the plans (or fleet parts) shown, each with price_as_of."""
    items = list(items)
    seen: dict[str, tuple[date, str]] = {}
    for item in items:
        if item.price_as_of:
            seen.setdefault(price_label(item), (date.fromisoformat(item.price_as_of),
                                                getattr(item, "price_as_of_kind", None) or "published"))
    if not seen:
        return []
    said = lambda d, kind: f"as of {d}" if kind == "published" else f"read {d} from a copy of unknown date"  # noqa: E731
    lines = ["prices used: " + "; ".join(f"{label} {said(d, kind)}" for label, (d, kind) in seen.items())]
    stale = [f"{label} ({age_days(d)} days)" for label, (d, kind) in seen.items()
             if kind == "published" and age_days(d) > STALE_DAYS]
    unknown = [label for label, (d, kind) in seen.items() if kind == "read"]
    if stale:
        lines.append(f"price older than {STALE_DAYS} days: " + ", ".join(stale)
                     + "; refresh with `gpuplan prices import PATH` (SkyPilot catalog layout)")
    china = sorted({item.accelerator for item in items if item.price_as_of and market() == "global"
                    and china_only(item.accelerator)})
    if china:
        lines.append("priced from China's market, the only one that sells it: " + ", ".join(china)
                     + " (CNY converted at catalog/fx.yaml's rate)")
    if unknown:
        lines.append("price of unknown date (it may be older than it looks): " + ", ".join(unknown)
                     + "; import a dated copy with `gpuplan prices import PATH --as-of DATE`")
    return lines


if __name__ == "__main__":  # python -m recommender.prices: rebuild catalog/prices_snapshot.csv
    write_rows(snapshot_rows(), SNAPSHOT)
    print(f"wrote {SNAPSHOT}")
