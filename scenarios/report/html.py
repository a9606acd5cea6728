"""The HTML report: one self-contained page drawn from summary.json.

Everything is inline (CSS, SVG, no script, no fonts), so the file opens anywhere,
offline, attached to a CI run or on a phone. The data is summary.json's; the
timelines were built in `summary.py`, this module only draws them.

Timelines are SVGs without a viewBox: x is a percentage of the run, y is pixels,
so they stretch to any width while text and hatching keep their shape.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..oracle import KINDS

__all__ = ["write_html", "render_html", "TRUTH_STATES", "VERDICTS"]

TRUTH_STATES = {  # what a person at the connector sees -> what it means
    "unplugged": "no car (idle)",
    "plugged": "car plugged, no transaction",
    "charging": "charging",
    "suspended": "transaction, car takes no energy",
    "finishing": "transaction over, cable still in",
    # explained field logs (scenarios/explain.py): what the charger said, where it said neither free nor in use
    "silent": "the charger has not reported it (since its boot)",
    "out_of_service": "Unavailable or Faulted",
}
VERDICTS = {"free": "free", "busy": "busy", "offline": "offline", "unknown": "unknown"}
IDLE = "unplugged"

OPEN_ALL_UP_TO = 12  # a run with at most this many connectors shows every timeline
OPEN_FAULTED_UP_TO = 30  # more faulted (but clean) connectors than this go into a collapsed group
VIOLATIONS_SHOWN = 25  # per scenario, the rest of the violations sit in a collapsed group

# y layout of one connector timeline (pixels)
_TRUTH_Y, _VERDICT_Y, _BAND_H = 3, 21, 14
_BANDS_END = _VERDICT_Y + _BAND_H  # 35
_MARK_Y = _BANDS_END + 2  # violation bar, then fault ticks
_LABEL_Y = (52, 63)  # fault label lanes
_LABEL_GAP = 0.2  # a label needs this fraction of the run before the next one in its lane


def write_html(path: Path, summary_path: Path) -> None:
    """Render `summary_path` (summary.json) into one self-contained page at `path`."""
    data = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    scenarios = data.get("scenarios") or []
    body = [_header(data), _table(scenarios)]
    body += [_section(i, s) for i, s in enumerate(scenarios)]
    title = f"{_overall(data)} · {data.get('title') or 'unstuck scenarios'}"
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>{_DEFS}<main>"
        + "\n".join(body)
        + "</main></body></html>\n"
    )


# ------------------------------------------------------------------ the run
def _overall(data: dict[str, Any]) -> str:
    if data.get("overall"):  # an explained field log: STUCK or CLEAR
        return str(data["overall"])
    if data.get("failed"):
        return "FAIL"
    return "PASS" if data.get("passed") else "NO RESULT"


def _header(data: dict[str, Any]) -> str:
    overall = _overall(data)
    cls = {"PASS": "pass", "FAIL": "fail", "STUCK": "fail", "CLEAR": "pass"}.get(overall, "skip")
    started = data.get("startedAt")
    when = (
        datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if isinstance(started, int | float)
        else None
    )
    facts = [
        ("profile", data.get("profile")),
        ("seed", data.get("seed")),
        ("scale", data.get("scale")),
        ("CSMS", data.get("csms")),
        ("database", data.get("db")),
        ("CSMS profile", _profile_line(data.get("csmsProfile"))),
        ("adapter", data.get("adapter")),
        ("CSMS arguments", " ".join(data.get("csmsArgs") or ()) or None),
        ("CSMS command", data.get("csmsCommand")),
        ("started", when),
        ("duration", _secs(data.get("duration"))),
    ]
    counts = (
        f'<span class="n pass">{int(data.get("passed") or 0)} passed</span>'
        f'<span class="n fail">{int(data.get("failed") or 0)} failed</span>'
    )
    if data.get("countsText"):  # an explained field log counts connectors, not scenarios
        counts = f'<span class="n">{_e(data["countsText"])}</span>'
    if data.get("notClaimed"):
        counts += f'<span class="n skip">{int(data["notClaimed"])} not claimed</span>'
    if data.get("skipped"):
        counts += f'<span class="n skip">{int(data["skipped"])} skipped</span>'
    versions = data.get("byOcpp") or {}
    if len(versions) > 1 or set(versions) - {"1.6"}:
        facts.append(("by OCPP version", "; ".join(f"{v}: {_counts_text(c)}" for v, c in versions.items())))
    unclaimed = data.get("unclaimedFindings") or {}
    note = (
        f'<p class="muted">findings the CSMS profile does not claim (not judged): {_e(_counts_text(unclaimed))}</p>'
        if unclaimed
        else ""
    )
    rerun = f'<p class="rerun">rerun: <code class="cmd">{_e(data["rerun"])}</code></p>' if data.get("rerun") else ""
    return (
        f'<header class="run {cls}"><div class="big">{overall}</div><div class="what">'
        f'<h1>{_e(data.get("title") or "unstuck scenarios")}</h1><p class="counts">{counts}</p>'
        f"{_facts(facts)}{note}{rerun}</div></header>"
    )


def _profile_line(profile: Any) -> str | None:
    """The profile's name, where it came from, and what it claims."""
    if not isinstance(profile, dict):
        return None
    claims = ", ".join(profile.get("claims") or ()) or "nothing"
    window = (profile.get("timings") or {}).get("recovery_window")
    return f"{profile.get('name')} ({profile.get('source')}): recovery window {window} s; claims {claims}"


def _table(scenarios: list[dict[str, Any]]) -> str:
    rows = []
    for i, s in enumerate(scenarios):
        fleet = s.get("fleet") or {}
        faults = fleet.get("faults") or {}
        nviol = len(s.get("violations") or ())
        seed = f'<div class="muted small">{_e(s["seedPassage"])}</div>' if s.get("seedPassage") else ""
        rows.append(
            f'<tr class="{_outcome_class(s)}"><td>{_badge(s)}</td>'
            f'<td class="what"><a href="#s{i}"><b>{_e(s.get("name"))}</b></a>'
            f"<div>{_e(s.get('purpose') or '')}</div>{seed}</td>"
            f'<td class="num" data-label="time">{_secs(s.get("duration"))}</td>'
            f'<td class="num" data-label="sessions">{_e(fleet.get("sessions", "–"))}</td>'
            f'<td class="num" data-label="faults" title="{_e(_counts_text(faults))}">{sum(faults.values()) if fleet else "–"}</td>'  # noqa: E501
            f'<td class="num{" bad" if nviol else ""}" data-label="violations">{nviol}</td>'
            f'<td class="rr"><code class="cmd">{_e(s.get("rerun") or "")}</code></td></tr>'
        )
    head = (
        "<tr><th>result</th><th>scenario · purpose · seed passage</th><th>time</th><th>sessions</th>"
        "<th>faults</th><th>violations</th><th>rerun</th></tr>"
    )
    return (
        f'<section class="card"><h2>Scenarios</h2><div class="scroll"><table class="scenarios">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


# ------------------------------------------------------------------ one scenario
def _section(i: int, s: dict[str, Any]) -> str:
    fleet = s.get("fleet") or {}
    tl = s.get("timeline")
    anchors = {}
    if tl:
        anchors = {(c["cp"], c["connector"]): f"s{i}c{k}" for k, c in enumerate(tl.get("connectors") or ())}
    facts = [
        ("duration", _secs(s.get("duration"))),
        ("seed", s.get("seed")),
        ("profile", s.get("profile")),
        ("charge points", fleet.get("chargePoints")),
        ("connectors", fleet.get("connectors")),
        ("sessions", fleet.get("sessions")),
        ("faults", _counts_text(fleet.get("faults") or {}) or None),
        ("fleet errors", _counts_text(fleet.get("errors") or {}) or None),
        ("checked", _counts_text(s.get("checked") or {}) or None),
        ("not claimed", _counts_text(s.get("unclaimed") or {}) or None),
        ("trace", s.get("trace")),
    ]
    parts = [
        f'<section class="card scenario {_outcome_class(s)}" id="s{i}">'
        f"<h2>{_badge(s)} {_e(s.get('name'))}</h2>"
        f'<p class="purpose">{_e(s.get("purpose") or "")}</p>'
        + (f'<p class="muted">seed passage: {_e(s["seedPassage"])}</p>' if s.get("seedPassage") else "")
        + _facts(facts)
        + f'<p class="rerun">rerun: <code class="cmd">{_e(s.get("rerun") or "")}</code></p>'
    ]
    if s.get("reportError"):
        parts.append(f'<p class="warn">this scenario\'s report could not be built: {_e(s["reportError"])}</p>')
    if s.get("notes"):
        parts.append('<h3>Notes</h3><ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in s["notes"]) + "</ul>")
    if s.get("error"):
        label = {"skipped": "why it was skipped", "not_claimed": "why it is not claimed"}.get(
            str(s.get("outcome")), "error"
        )
        first = textwrap.shorten(_headline(str(s["error"])), 160, placeholder=" …")  # whole words only
        parts.append(
            f'<details class="error"><summary><b>{label}</b> <span class="muted">'
            f"{_e(first)}</span></summary><pre>{_e(s['error'])}</pre></details>"
        )
    parts.append(_violations(s.get("violations") or [], anchors))
    if tl:
        parts.append(_timelines(i, s, tl, anchors))
    elif s.get("outcome") not in ("skipped", "not_claimed"):
        parts.append('<p class="muted">no timeline: the fleet never started.</p>')
    parts.append("</section>")
    return "".join(parts)


def _violations(violations: list[dict[str, Any]], anchors: dict[tuple[str, int], str]) -> str:
    if not violations:
        return ""
    by_kind: dict[str, int] = {}
    for v in violations:
        by_kind[v.get("kind", "?")] = by_kind.get(v.get("kind", "?"), 0) + 1
    cards = [_violation(v, anchors) for v in violations]
    out = [
        f'<h3>Violations ({len(violations)})</h3><p class="kinds">'
        + " ".join(f'<span class="kind">{_e(k)} × {n}</span>' for k, n in by_kind.items())
        + "</p>"
    ]
    out += cards[:VIOLATIONS_SHOWN]
    if len(cards) > VIOLATIONS_SHOWN:
        out.append(
            f'<details class="group"><summary>{len(cards) - VIOLATIONS_SHOWN} more violations'
            f"</summary>{''.join(cards[VIOLATIONS_SHOWN:])}</details>"
        )
    return "".join(out)


def _violation(v: dict[str, Any], anchors: dict[tuple[str, int], str]) -> str:
    kind = str(v.get("kind", "?"))
    where = f"{v.get('cp')} / connector {v.get('connector')}"
    anchor = anchors.get((v.get("cp"), v.get("connector")))
    where_html = f'<a href="#{anchor}">{_e(where)}</a>' if anchor else _e(where)
    when = ""
    if v.get("when"):
        when = str(v["when"])
    elif v.get("t") is not None:
        when = f"t = {v['t']:.1f} s"
        if v.get("lastT") is not None and v.get("count", 1) > 1:
            when += f" … {v['lastT']:.1f} s ({v['count']} samples)"
    evidence = []
    verdict = v.get("verdict")
    if verdict:
        reasons = verdict.get("reasons") or []
        signals = verdict.get("signals")
        evidence.append(
            f'<div><h4>What the CSMS said</h4><p><span class="chip v-{_cls(verdict.get("verdict"))}">'
            f"{_e(verdict.get('verdict'))}</span></p>"
            + (
                '<ul class="reasons">' + "".join(f"<li><code>{_e(r)}</code></li>" for r in reasons) + "</ul>"
                if reasons
                else '<p class="muted">no reasons given</p>'
            )
            + (
                f"<details open><summary>raw signals</summary><pre>{_e(_pretty(signals))}</pre></details>"
                if signals
                else ""
            )
            + "</div>"
        )
    truth = v.get("truth") or {}
    if truth:
        evidence.append(f"<div><h4>{_e(v.get('truthLabel') or 'Ground truth')}</h4>{_kv(truth)}</div>")
    faults = v.get("faults") or []
    if faults:
        rows = "".join(
            f'<tr><td class="num">{_e(f["at"]) if f.get("at") else _num(f.get("t"), 2) + " s"}</td>'
            f"<td><b>{_e(f.get('name'))}</b></td>"
            f"<td>{'' if f.get('connector') is None else _e(f.get('connector'))}</td>"
            f"<td><code>{_e(_params(f.get('params')))}</code></td></tr>"
            for f in faults
        )
        evidence.append(
            f'<div><h4>{_e(v.get("faultsLabel") or "Fault history")}</h4><table class="faults"><tr><th>t</th>'
            f"<th>fault</th><th>connector</th><th>params</th></tr>{rows}</table></div>"
        )
    else:
        evidence.append('<div><h4>Fault history</h4><p class="muted">no fault fired on this connector</p></div>')
    return (
        f'<article class="violation"><header><span class="kind">{_e(kind)}</span> {where_html} '
        f'<span class="muted">{_e(when)}</span></header><p class="msg">{_e(v.get("message") or "")}</p>'
        + (f'<p class="muted small">{_e(KINDS[kind])}</p>' if kind in KINDS else "")
        + f'<div class="evidence">{"".join(evidence)}</div></article>'
    )


# ------------------------------------------------------------------ timelines
def _timelines(i: int, s: dict[str, Any], tl: dict[str, Any], anchors: dict[tuple[str, int], str]) -> str:
    end = float(tl.get("end") or 0) or 1.0
    rec = tl.get("recoveryFrom")
    window = tl.get("window")
    rec_end = None if rec is None or window is None else rec + window
    lines = [(t, c) for t, c in ((rec, "rec"), (rec_end, "win")) if t is not None and 0 <= t <= end]
    epoch = tl.get("epoch")  # an explained field log: the axis reads as the log's clock
    ticks = _clock_ticks(end, epoch) if epoch else _ticks(end)
    truth_label = str(tl.get("truthLabel") or "truth")
    spans: dict[tuple[str, int], list[tuple[float, float, str]]] = {}
    for v in s.get("violations") or ():
        if v.get("t") is not None:
            last = v.get("lastT") if v.get("lastT") is not None else v["t"]
            spans.setdefault((v.get("cp"), v.get("connector")), []).append((v["t"], last, v.get("message", "")))

    conns = list(tl.get("connectors") or ())
    bad = [c for c in conns if c.get("violations") or (c["cp"], c["connector"]) in spans]
    bad_keys = {(c["cp"], c["connector"]) for c in bad}
    faulted = [c for c in conns if (c["cp"], c["connector"]) not in bad_keys and c.get("faults")]
    quiet = [c for c in conns if (c["cp"], c["connector"]) not in bad_keys and not c.get("faults")]

    def block(group: list[dict[str, Any]]) -> str:
        axis = _axis(end, ticks, lines, epoch)
        rows = "".join(
            _connector(
                c,
                end,
                ticks,
                lines,
                spans.get((c["cp"], c["connector"]), []),
                anchors[(c["cp"], c["connector"])],
                truth_label,
            )
            for c in group
        )
        return f'<div class="lanes">{axis}{rows}</div>'

    span = f"{_clock_label(0, epoch)} – {_clock_label(end, epoch)} (log time, UTC)" if epoch else f"{end:.1f} s"
    recovery = f" · recovery from {_num(rec)} s, window {_num(window)} s" if rec is not None else ""
    out = [
        f'<h3>Timelines <span class="muted small">{len(conns)} connectors · {span}{recovery}</span></h3>',
        _legend(truth_label, bool(lines)),
        "" if epoch else _falsely_busy_chart(tl.get("falselyBusy") or [], end, ticks, lines),
    ]
    if len(conns) <= OPEN_ALL_UP_TO:
        out.append(block(bad + faulted + quiet))
    else:
        if bad:
            out.append(f'<h4 class="bad">{len(bad)} connectors with violations</h4>{block(bad)}')
        if faulted:
            title = f"{len(faulted)} connectors with faults, no violation"
            if len(faulted) <= OPEN_FAULTED_UP_TO:
                out.append(f"<h4>{title}</h4>{block(faulted)}")
            else:
                out.append(f'<details class="group"><summary>{title}</summary>{block(faulted)}</details>')
        if quiet:
            out.append(
                f'<details class="group"><summary>{len(quiet)} connectors without faults or '
                f"violations</summary>{block(quiet)}</details>"
            )
    return "".join(out)


def _connector(
    c: dict[str, Any],
    end: float,
    ticks: list[float],
    lines: list[tuple[float, str]],
    spans: list[tuple[float, float, str]],
    anchor: str,
    truth_label: str = "truth",
) -> str:
    truth = [(a, b, st) for a, b, st in c.get("truth") or () if b > a]
    verdict = [(a, b, vd) for a, b, vd in c.get("verdict") or () if b > a]
    offline = [(a, b) for a, b in c.get("offline") or () if b > a]
    faults = c.get("faults") or []
    kinds = c.get("violations") or []
    label_lanes = _label_lanes(faults, end)
    height = _LABEL_Y[max(label_lanes.values(), default=-1)] + 4 if label_lanes else _MARK_Y + 8
    g = [
        f'<rect class="bg" x="0" y="{_TRUTH_Y}" width="100%" height="{_BAND_H}"/>',
        f'<rect class="bg" x="0" y="{_VERDICT_Y}" width="100%" height="{_BAND_H}"/>',
    ]
    g += [f'<line class="grid" x1="{_x(t, end)}" x2="{_x(t, end)}" y1="0" y2="{_BANDS_END + 2}"/>' for t in ticks[1:]]
    for a, b, st in truth:
        g.append(_seg(a, b, end, _TRUTH_Y, _cls(st), f"{st} {a:g}–{b:g} s"))
    for a, b, vd in verdict:
        g.append(_seg(a, b, end, _VERDICT_Y, "v-" + _cls(vd), f"CSMS: {vd} {a:g}–{b:g} s"))
    for a, b in _falsely_busy_stretches(truth, verdict, offline):
        g.append(
            f'<rect class="fb" x="{_x(a, end)}" y="{_VERDICT_Y}" width="{_w(a, b, end)}" '
            f'height="{_BAND_H}"><title>idle but not reported free {a:g}–{b:g} s</title></rect>'
        )
    for a, b in offline:
        g.append(
            f'<rect class="off" x="{_x(a, end)}" y="{_TRUTH_Y - 2}" width="{_w(a, b, end)}" '
            f'height="{_BANDS_END - _TRUTH_Y + 4}"><title>charger offline {a:g}–{b:g} s</title></rect>'
        )
    for t, cls in lines:
        g.append(f'<line class="{cls}" x1="{_x(t, end)}" x2="{_x(t, end)}" y1="0" y2="{_BANDS_END + 2}"/>')
    for a, b, msg in spans:
        g.append(
            f'<rect class="vspan" x="{_x(a, end)}" y="{_MARK_Y}" width="{_w(a, b, end, 0.4)}" '
            f'height="3"><title>{_e(msg)}</title></rect>'
        )
    for k, (t, name) in enumerate(faults):
        x = _x(t, end)
        tip = f"<title>{_e(name)} at t={t:g} s</title>"
        lane = label_lanes.get(k)
        label = ""
        if lane is not None:
            anchor_attr = ' text-anchor="end"' if t > 0.75 * end else ""
            label = f'<text x="{x}" y="{_LABEL_Y[lane]}"{anchor_attr}>{_e(name)}</text>'
            label += f'<line x1="{x}" x2="{x}" y1="{_MARK_Y + 7}" y2="{_LABEL_Y[lane] - 9}"/>' if lane else ""
        g.append(
            f'<g class="ft">{tip}<line x1="{x}" x2="{x}" y1="{_TRUTH_Y - 2}" y2="{_MARK_Y + 7}"/>'
            f'<circle cx="{x}" cy="{_MARK_Y + 5}" r="2.5"/>{label}</g>'
        )
    cp, n = c.get("cp"), c.get("connector")
    head = (
        f'<b>{_e(cp)}</b> <span class="muted">connector</span> <b>{_e(n)}</b>'
        + "".join(f' <span class="kind">{_e(k)}</span>' for k in kinds)
        + (f' <span class="muted small">{len(faults)} fault{"s" if len(faults) != 1 else ""}</span>' if faults else "")
    )
    cls = "conn bad" if kinds or spans else "conn"
    return (
        f'<div class="{cls}" id="{anchor}"><div class="head">{head}</div>'
        f'<div class="row"><div class="ylab"><span>{_e(truth_label)}</span><span>CSMS</span></div>'
        f'<svg class="tl" width="100%" height="{height}" role="img" '
        f'aria-label="{_e(f"{cp} connector {n}")}">{"".join(g)}</svg></div></div>'
    )


def _axis(end: float, ticks: list[float], lines: list[tuple[float, str]], epoch: str | None = None) -> str:
    """Seconds (or, with `epoch`, the log's clock) along the top of a group of timelines; recovery labels get a
    row each when they are close."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    close = len(lines) == 2 and abs(lines[1][0] - lines[0][0]) < 0.45 * end
    label_y = {"rec": 9, "win": 20 if close else 9}
    base = 43 if close else 32  # the axis line; tick labels sit just above it
    g = []
    for t in ticks:
        x = _x(t, end)
        anchor = "start" if t == 0 else "middle"
        g.append(
            f'<line class="tick" x1="{x}" x2="{x}" y1="{base - 6}" y2="{base}"/>'
            f'<text x="{x}" y="{base - 9}" text-anchor="{anchor}">'
            + (_clock_label(t, epoch)[:5] if epoch else f"{_tick_label(t, step)}{' s' if t == 0 else ''}")
            + "</text>"
        )
    names = {"rec": "recovery", "win": "window end"}
    for t, cls in lines:
        x = _x(t, end)
        right = t > 0.5 * end
        anchor, dx = ("end", "-3") if right else ("start", "3")
        g.append(
            f'<line class="{cls}" x1="{x}" x2="{x}" y1="0" y2="{label_y[cls] + 2}"/>'
            f'<line class="{cls}" x1="{x}" x2="{x}" y1="{base - 6}" y2="{base + 2}"/>'
            f'<text class="{cls}" x="{x}" dx="{dx}" y="{label_y[cls]}" text-anchor="{anchor}">'
            f"{names[cls]} {t:g} s</text>"
        )
    return (
        f'<div class="row axisrow"><div class="ylab"></div>'
        f'<svg class="axis" width="100%" height="{base + 2}">{"".join(g)}'
        f'<line class="base" x1="0" x2="100%" y1="{base}" y2="{base}"/></svg></div>'
    )


def _falsely_busy_chart(
    series: list[list[float]], end: float, ticks: list[float], lines: list[tuple[float, str]]
) -> str:
    if not series:
        return ""
    top = max(max(n for _, n in series), 1)
    h = 90

    def y(n: float) -> float:
        return round(h - 4 - (h - 14) * n / top, 1)

    def x(t: float) -> float:
        return round(1000 * min(max(t, 0), end) / end, 1)

    d = [f"M{x(series[0][0])} {y(series[0][1])}"]
    for (_, n0), (t1, n1) in zip(series, series[1:], strict=False):
        if n1 != n0:
            d.append(f"H{x(t1)}V{y(n1)}")
    d.append(f"H{x(end)}")
    line = "".join(d)
    area = f"{line}V{y(0)}H{x(series[0][0])}Z"
    g = [f'<line class="grid" x1="0" x2="100%" y1="{y(v)}" y2="{y(v)}"/>' for v in _y_ticks(top)]
    g += [f'<line class="grid" x1="{_x(t, end)}" x2="{_x(t, end)}" y1="0" y2="{h}"/>' for t in ticks[1:]]
    g += [f'<line class="{cls}" x1="{_x(t, end)}" x2="{_x(t, end)}" y1="0" y2="{h}"/>' for t, cls in lines]
    worst = max(series, key=lambda p: p[1])
    tip = f"most at once: {worst[1]:g} at t={worst[0]:g} s" if worst[1] else "none at any time"
    g.append(
        f'<svg x="0" y="0" width="100%" height="{h}" viewBox="0 0 1000 {h}" '
        f'preserveAspectRatio="none"><title>{tip}</title><path class="fbarea" d="{area}"/>'
        f'<path class="fbline" d="{line}"/></svg>'
    )
    labels = "".join(f'<span style="top:{y(v) - 7}px">{v:g}</span>' for v in _y_ticks(top))
    return (
        f'<div class="chart"><h4>Falsely busy connectors over time <span class="muted small">'
        f'idle, charger online, not reported free · {_e(tip)}</span></h4><div class="lanes">'
        f'{_axis(end, ticks, lines)}<div class="row"><div class="ylab nums" style="height:{h}px">'
        f'{labels}</div><svg class="fbchart" width="100%" height="{h}" role="img" '
        f'aria-label="falsely busy connectors over time">{"".join(g)}</svg></div></div></div>'
    )


def _legend(truth_label: str = "truth", recovery: bool = True) -> str:
    def item(cls: str, label: str, title: str = "") -> str:
        t = f' title="{_e(title)}"' if title else ""
        return f'<span class="li"{t}><i class="sw {cls}"></i>{_e(label)}</span>'

    truth = "".join(item(st, st, meaning) for st, meaning in TRUTH_STATES.items())
    verdict = "".join(item("v-" + v, label) for v, label in VERDICTS.items())
    marks = (
        item("fb", "idle but not reported free")
        + item("off", "charger offline")
        + item("vspan", "violation seen")
        + f'<span class="li"><i class="sw ftick"></i>{"fault" if recovery else "log event"}</span>'
    )
    if recovery:
        marks += (
            '<span class="li"><i class="sw lrec"></i>recovery starts</span>'
            '<span class="li"><i class="sw lwin"></i>recovery window ends</span>'
        )
    return (
        f'<div class="legend"><div><b>{_e(truth_label)}</b> (upper band) {truth}</div>'
        f"<div><b>CSMS verdict</b> (lower band) {verdict}</div><div><b>marks</b> {marks}</div></div>"
    )


# ------------------------------------------------------------------ geometry
def _falsely_busy_stretches(
    truth: Sequence[tuple[float, float, str]],
    verdict: Sequence[tuple[float, float, str]],
    offline: Sequence[tuple[float, float]],
) -> list[tuple[float, float]]:
    """Where the connector was idle, its charger online, and the CSMS did not say free (as summary.py counts)."""
    idle = [(a, b) for a, b, st in truth if st == IDLE]
    not_free = [(a, b) for a, b, vd in verdict if vd != "free"]
    return _subtract(_intersect(_merge(idle), _merge(not_free)), _merge(offline))


def _merge(xs: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(xs):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        lo, hi = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if hi > lo:
            out.append((lo, hi))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for a, b in xs:
        for c, d in ys:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
            if a >= b:
                break
        if b > a:
            out.append((a, b))
    return out


def _label_lanes(faults: list[list[Any]], end: float) -> dict[int, int]:
    """Fault index -> label lane (0 or 1); faults too close to both lanes' last labels get a tooltip only."""
    last = [-math.inf] * len(_LABEL_Y)
    out = {}
    for k, (t, _) in sorted(enumerate(faults), key=lambda p: p[1][0]):
        for lane, prev in enumerate(last):
            if t - prev >= _LABEL_GAP * end:
                out[k], last[lane] = lane, t
                break
    return out


def _ticks(end: float) -> list[float]:
    raw = end / 8
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [round(k * step, 6) for k in range(int(end / step + 1e-9) + 1)]


def _clock_ticks(end: float, epoch: str) -> list[float]:
    """t = 0, then every whole hour (half hour in a short log, quarter in a shorter one) of the log's clock."""
    start = datetime.fromisoformat(epoch.replace("Z", "+00:00"))
    step = 3600 if end > 4 * 3600 else 1800 if end > 3600 else 900
    first = step - (start.minute * 60 + start.second + start.microsecond / 1e6) % step
    ticks = [0.0]
    t = first
    while t <= end:
        if t > 0.04 * end:  # no label crowding the start's
            ticks.append(round(t, 3))
        t += step
    return ticks


def _clock_label(t: float, epoch: str | None) -> str:
    """Log time as the log's clock (HH:MM:SS, UTC)."""
    if not epoch:
        return f"{t:g} s"
    start = datetime.fromisoformat(epoch.replace("Z", "+00:00"))
    return (start + timedelta(seconds=t)).astimezone(UTC).strftime("%H:%M:%S")


def _y_ticks(top: int) -> list[int]:
    return sorted({0, top // 2, top}) if top > 1 else [0, 1]


def _tick_label(t: float, step: float) -> str:
    return f"{t:.0f}" if step >= 1 else f"{t:.{max(0, -math.floor(math.log10(step)))}f}"


def _x(t: float, end: float) -> str:
    return f"{100 * min(max(t, 0.0), end) / end:.2f}%"


def _w(a: float, b: float, end: float, minimum: float = 0.0) -> str:
    return f"{max(100 * (min(b, end) - max(a, 0.0)) / end, minimum):.2f}%"


def _seg(a: float, b: float, end: float, y: int, cls: str, title: str) -> str:
    return (
        f'<rect class="{cls}" x="{_x(a, end)}" y="{y}" width="{_w(a, b, end)}" height="{_BAND_H}">'
        f"<title>{_e(title)}</title></rect>"
    )


# ------------------------------------------------------------------ small things
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cls(name: Any) -> str:
    """A CSS class for a state or verdict; anything unexpected is drawn as 'other'."""
    return name if name in TRUTH_STATES or name in VERDICTS else "other"


def _outcome_class(s: dict[str, Any]) -> str:
    return {"passed": "pass", "failed": "fail", "error": "fail", "stuck": "fail", "clear": "pass"}.get(
        s.get("outcome", ""), "skip"
    )


def _badge(s: dict[str, Any]) -> str:
    outcome = str(s.get("outcome") or "?").replace("_", " ")
    return f'<span class="badge {_outcome_class(s)}">{_e(outcome.upper())}</span>'


def _facts(pairs: list[tuple[str, Any]]) -> str:
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="facts">{items}</dl>'


def _kv(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v if isinstance(v, str) else _compact(v))}</td></tr>" for k, v in d.items()
    )
    return f'<table class="kv">{rows}</table>'


def _counts_text(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _secs(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} m {value % 60:04.1f} s"


def _num(value: Any, digits: int | None = None) -> str:
    if not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:.{digits}f}" if digits is not None else f"{value:g}"


def _headline(error: str) -> str:
    """The line of a pytest failure worth reading first: the (innermost non-group) exception and its message."""
    found = [m.group(1) for m in _EXCEPTION_LINE.finditer(error)]
    useful = [f for f in found if not f.startswith(("ExceptionGroup", "BaseExceptionGroup"))]
    pytest_e = [ln[1:] for ln in error.splitlines() if ln.startswith("E ") and ln[1:].strip()]
    first = [ln for ln in error.splitlines() if ln.strip()][:1] or [""]
    return (useful or pytest_e or found or first)[0].strip()


_EXCEPTION_LINE = re.compile(
    r"^[\s|+E>-]*((?:[A-Za-z_][\w.]*)?(?:Error|Exception|ExceptionGroup|Failed|Timeout)\w*: .*)$", re.MULTILINE
)


def _params(value: Any) -> str:
    """A fault's parameters; an explained log's event is already words."""
    if not value:
        return ""
    return value if isinstance(value, str) else _compact(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


# Colours: truth in blues and violets, verdicts in traffic colours, so the two bands never look alike.
_CSS = """
:root{--fg:#1d232a;--muted:#66707a;--line:#dde2e8;--bg:#f3f5f8;--card:#fff;--pass:#1f9d55;--fail:#d63939;
--skip:#8a94a0;--unplugged:#e4e8ee;--plugged:#9cc3f5;--charging:#1f5fd6;--suspended:#7a4fd3;--finishing:#c7a5f2;
--free:#2fb26a;--busy:#f0642a;--offline:#8d959e;--unknown:#e8d38a;--rec:#1d232a;--win:#c2255c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:12px}
h1{font-size:20px;margin:0}h2{font-size:18px;margin:0 0 6px}h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:12px 0 4px}
a{color:#1f5fd6;text-decoration:none}a:hover{text-decoration:underline}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px;overflow:auto;max-height:420px;
margin:4px 0}
.muted{color:var(--muted)}.small{font-size:12px;font-weight:normal}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:12px 0;
box-shadow:0 1px 2px rgba(0,0,0,.04)}
.run{display:flex;gap:18px;align-items:center;border-radius:10px;padding:14px 18px;color:#fff;flex-wrap:wrap}
.run.pass{background:linear-gradient(135deg,#1f9d55,#168045)}.run.fail{background:linear-gradient(135deg,#d63939,#a61e1e)}
.run.skip{background:#6c757d}
.run .big{font-size:44px;font-weight:800;letter-spacing:2px;line-height:1;padding:6px 14px;border:3px solid
rgba(255,255,255,.85);border-radius:10px}
.run .what{flex:1;min-width:240px}.run .facts dt{color:rgba(255,255,255,.75)}
.counts{margin:4px 0}.counts .n{margin-right:12px;font-weight:700;font-size:16px}
.facts{display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0}.facts div{display:flex;gap:6px}
.facts dt{color:var(--muted)}.facts dd{margin:0;font-weight:600;word-break:break-all}
.scroll{overflow-x:auto}
table{border-collapse:collapse}
.scenarios{width:100%}.scenarios th,.scenarios td{padding:7px 8px;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}
.scenarios th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
.scenarios tr.fail td{background:#fff5f5}
.scenarios td.what{min-width:260px}.scenarios td.what div{margin-top:2px}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}td.bad{color:var(--fail);font-weight:700}
.badge{display:inline-block;font-size:11px;font-weight:800;letter-spacing:.5px;padding:2px 8px;border-radius:99px;
color:#fff;vertical-align:middle}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}.badge.skip{background:var(--skip)}
code.cmd{background:#f1f3f5;border:1px solid var(--line);border-radius:4px;padding:1px 5px;user-select:all;
white-space:nowrap}
.scenario.fail{border-left:5px solid var(--fail)}.scenario.pass{border-left:5px solid var(--pass)}
.scenario>p{margin:4px 0}.purpose{font-size:15px}.rerun{margin:6px 0}
.warn{background:#fff4e6;border:1px solid #ffc078;border-radius:6px;padding:6px 10px}
.notes{margin:4px 0;padding-left:20px}
details>summary{cursor:pointer}details.error{border:1px solid #f5c2c2;background:#fff8f8;border-radius:6px;
padding:6px 10px;margin:8px 0}
details.group{margin:10px 0}details.group>summary{font-weight:600;padding:4px 0}
.kind{display:inline-block;background:#fde8e8;color:#a51d1d;border:1px solid #f5b5b5;border-radius:4px;
padding:0 6px;font-size:12px;font-weight:700}
.kinds .kind{margin-right:6px}
.violation{border:1px solid #f1c0c0;border-radius:8px;margin:10px 0;padding:10px 12px;background:#fffafa}
.violation header{font-weight:600}.violation .msg{margin:6px 0 2px;font-size:14px}
.evidence{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px;margin-top:6px}
.evidence>div{background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:0}
.evidence h4{margin:2px 0 6px}.reasons{margin:4px 0;padding-left:18px}
.kv th{color:var(--muted);font-weight:normal;text-align:left;padding:1px 10px 1px 0;vertical-align:top}
.kv td{word-break:break-word}.faults th,.faults td{padding:1px 8px 1px 0;text-align:left;font-size:12px}
.chip{display:inline-block;padding:1px 10px;border-radius:99px;font-weight:700;color:#fff}
.chip.v-free{background:var(--free)}.chip.v-busy{background:var(--busy)}.chip.v-offline{background:var(--offline)}
.chip.v-unknown,.chip.v-other{background:var(--unknown);color:var(--fg)}
.legend{display:flex;flex-direction:column;gap:4px;font-size:12px;background:#f8f9fb;border:1px solid var(--line);
border-radius:6px;padding:6px 10px;margin:6px 0 10px}
.li{display:inline-flex;align-items:center;gap:4px;margin:0 10px 0 6px;white-space:nowrap}
.sw{display:inline-block;width:22px;height:11px;border-radius:2px;border:1px solid rgba(0,0,0,.12)}
.sw.unplugged{background:var(--unplugged)}.sw.plugged{background:var(--plugged)}.sw.charging{background:var(--charging)}
.sw.suspended{background:var(--suspended)}.sw.finishing{background:var(--finishing)}
.sw.v-free{background:var(--free)}.sw.v-busy{background:var(--busy)}.sw.v-offline{background:var(--offline)}
.sw.v-unknown{background:var(--unknown)}
.sw.fb{background:repeating-linear-gradient(135deg,#8f0d0d 0 2px,var(--busy) 2px 5px);border:2px solid #b00000}
.sw.off{background:repeating-linear-gradient(45deg,#555 0 1.5px,rgba(255,255,255,.6) 1.5px 5px)}
.sw.vspan{background:#c91414;height:4px;border:0}
.sw.ftick{width:2px;height:14px;background:#222;border:0;border-radius:0}
.sw.lrec{width:0;height:14px;border:0;border-left:2px dashed var(--rec);border-radius:0}
.sw.lwin{width:0;height:14px;border:0;border-left:2px solid var(--win);border-radius:0}
.lanes{margin:4px 0 8px}
.row{display:grid;grid-template-columns:44px 1fr;align-items:start;padding-right:10px}
.axisrow{position:sticky;top:0;z-index:2;background:#fff;box-shadow:0 1px 0 var(--line)}
.ylab{display:flex;flex-direction:column;font-size:10px;color:var(--muted);text-align:right;padding-right:6px}
.ylab span{height:18px;line-height:18px}
.ylab.nums{position:relative}.ylab.nums span{position:absolute;right:6px;height:14px;line-height:14px}
svg{display:block;overflow:visible}
svg text{font-size:10px;fill:#46505a}
.axis text{font-variant-numeric:tabular-nums}.axis .tick,.axis .base{stroke:#98a1ab}
.axis text.rec{fill:var(--rec);font-weight:700}.axis text.win{fill:var(--win);font-weight:700}
.conn{padding:4px 0 2px;border-top:1px solid #eef1f4}
.conn .head{font-size:12px;padding-left:44px}.conn .head .kind{font-size:11px}
.conn.bad{background:#fff3f3;border-left:4px solid var(--fail);margin-left:-4px}
.tl rect.bg{fill:#f8f9fa;stroke:#e3e7eb}
.tl .unplugged{fill:var(--unplugged)}.tl .plugged{fill:var(--plugged)}.tl .charging{fill:var(--charging)}
.tl .suspended{fill:var(--suspended)}.tl .finishing{fill:var(--finishing)}.tl .other{fill:#f7c6e0}
.tl .silent{fill:url(#silenthatch)}.sw.silent{background:repeating-linear-gradient(90deg,#e4e8ee 0 3px,#fff 3px 6px)}
.tl .out_of_service{fill:#5c6670}.sw.out_of_service{background:#5c6670}
.tl .v-free{fill:var(--free)}.tl .v-busy{fill:var(--busy)}.tl .v-offline{fill:var(--offline)}
.tl .v-unknown,.tl .v-other{fill:var(--unknown)}
.tl rect.fb{fill:url(#fbhatch);stroke:#b00000;stroke-width:2}
.tl rect.off{fill:url(#offhatch);stroke:#59616a;stroke-width:1;stroke-dasharray:3 2}
.tl rect.vspan{fill:#c91414}
.grid{stroke:#e9ecef;stroke-width:1}
line.rec{stroke:var(--rec);stroke-width:1.5;stroke-dasharray:4 3}line.win{stroke:var(--win);stroke-width:1.5}
.ft line{stroke:#222;stroke-width:1.2}.ft circle{fill:#222}.ft text{font-size:10px;fill:#222}
.chart{margin:6px 0 14px}.fbchart .fbarea{fill:rgba(214,57,57,.18)}
.fbchart .fbline{fill:none;stroke:var(--fail);stroke-width:2;vector-effect:non-scaling-stroke}
h4.bad{color:var(--fail)}
@media (max-width:640px){main{padding:6px}.card{padding:10px}.run .big{font-size:32px}
.row{grid-template-columns:34px 1fr}
.scenarios thead{display:none}.scenarios tr{display:block;border-bottom:1px solid var(--line);padding:6px 0}
.scenarios td,.scenarios tr.fail td{display:inline-block;border:0;padding:2px 6px;background:none}
.scenarios tr.fail{background:#fff5f5}.scenarios td.what{display:block;min-width:0}
.scenarios td.num::before{content:attr(data-label) " ";color:var(--muted);font-weight:normal}
.scenarios td.rr{display:block}code.cmd{white-space:normal;word-break:break-all}.conn .head{padding-left:34px}
.ft text{display:none}}
"""

# Patterns shared by every timeline (one hidden SVG; display:none would stop them painting in some browsers).
_DEFS = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
    '<pattern id="fbhatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f0642a"/>'
    '<rect width="2.5" height="6" fill="#8f0d0d"/></pattern>'
    '<pattern id="silenthatch" width="6" height="6" patternUnits="userSpaceOnUse">'
    '<rect width="6" height="6" fill="#fff"/><rect width="3" height="6" fill="#e4e8ee"/></pattern>'
    '<pattern id="offhatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(-45)"><rect width="1.5" height="6" fill="#3d434a" fill-opacity=".75"/></pattern>'
    "</defs></svg>"
)
