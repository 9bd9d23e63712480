"""What `telucodec eval` shows: the markdown table, rate–quality plots and report.html.

report.html is a page *in a folder*: the summary table, both plots, and for a few clips an audio
player and a spectrogram per system, which it loads from the WAVs under audio/ and the PNGs
under spectrograms/ beside it (embedding them would make a page of many MB). Every link is
relative, so the whole folder can be zipped, moved or published as it is, and the page says so;
every text is escaped.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import soundfile as sf

from telucodec.evaluation.plots import log_spectrogram, save_spectrograms

AUDIO_DIR = "audio"
SPECTROGRAM_DIR = "spectrograms"
ORIGINAL_FILE = "original.wav"
FOLDER_NOTE = (f"The players and pictures below are files in {AUDIO_DIR}/ and {SPECTROGRAM_DIR}/ next to this "
               "page: to share or move the report, take the whole folder (report.html alone plays nothing).")
SYSTEM_COLOURS = {"telucodec": "#c0392b", "opus": "#2e6fba", "codec2": "#2f9a4a", "lyra": "#d98a1c",
                  "reference": "#7b4bb3"}


def _fmt(digits: int) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        return f"{value:.{digits}f}"
    return fmt


# (header, results.json key, formatter) for the summary table, in markdown and in HTML
COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("system", "system", str),
    ("setting", "setting", str),
    ("kbps nominal", "kbps_nominal", _fmt(2)),
    ("kbps actual", "kbps_actual", _fmt(2)),
    ("PESQ-WB", "pesq_wb", _fmt(2)),
    ("PESQ p10", "pesq_wb_p10", _fmt(2)),
    ("STOI", "stoi", _fmt(3)),
    ("SI-SDR dB", "si_sdr_db", _fmt(1)),
    ("SNR dB", "snr_db", _fmt(1)),
    ("mel dist", "mel_distance", _fmt(3)),
    ("RMS ratio", "rms_ratio", _fmt(2)),
    ("clips", "clips", str),
]


def _safe(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "x"


def clip_slug(index: int, name: str) -> str:
    """Folder name of the index-th report clip: "01_common_voice_te_42973996"."""
    return f"{index + 1:02d}_{_safe(Path(name).stem)}"


def system_file(system: str, setting: str) -> str:
    """File name of one system's decoded WAV inside a clip folder: "codec2_700C.wav"."""
    return f"{_safe(system)}_{_safe(setting)}.wav"


def markdown_table(systems: list[dict[str, Any]]) -> str:
    """The summary as a GitHub markdown table, one row per system × setting."""
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for entry in systems:
        lines.append("| " + " | ".join(fmt(entry.get(key)) for _, key, fmt in COLUMNS) + " |")
    return "\n".join(lines)


SKIPPED_SHOWN = 20  # skipped clips listed by name in results.md (and so on stdout); skipped.tsv has all


def skipped_lines(skipped: list[dict[str, str]], limit: int | None = SKIPPED_SHOWN) -> tuple[str, list[str]]:
    """(heading, one "path: reason" line per skipped clip, at most `limit` of them plus a line
    naming how many more skipped.tsv holds); ("", []) when nothing was skipped."""
    if not skipped:
        return "", []
    n = len(skipped)
    heading = (f"Skipped {n} clip{'s' if n != 1 else ''} (not in any table above: unreadable, silent or "
               "too short, as training refuses them; skipped.tsv lists them):")
    shown = skipped if limit is None else skipped[:limit]
    lines = [f"{s['path']}: {s['reason']}" for s in shown]
    if len(shown) < n:
        lines.append(f"... and {n - len(shown)} more (skipped.tsv)")
    return heading, lines


def skipped_markdown(skipped: list[dict[str, str]]) -> str:
    """The skipped clips as a markdown paragraph and list ("" when none was skipped)."""
    heading, lines = skipped_lines(skipped)
    return heading + "\n\n" + "\n".join(f"- {line}" for line in lines) if heading else ""


TOP_LEVEL = "(top level)"  # how the clips sitting directly in the data folder are shown per speaker


def speaker_note(per_speaker: list[dict[str, Any]], data_dir: str) -> str:
    """Where speakers come from, when the clips did not say ("" when every clip has a speaker)."""
    speakers = {e["speaker"] for e in per_speaker}
    if "" not in speakers:
        return ""
    how = ("speakers come from a manifest's `speaker` column (a .tsv/.csv with path and speaker, or a "
           "manifest.tsv in the folder) or from subfolders, one per speaker")
    if speakers == {""}:
        return f"No per-speaker table: the clips sit directly in {data_dir}, so no speakers are known; {how}."
    return f"Clips directly in {data_dir} are shown as speaker {TOP_LEVEL}; {how}."


def speaker_table(per_speaker: list[dict[str, Any]], system: str = "telucodec") -> str:
    """`system`'s rows of results.json's per_speaker as a markdown table ("" when it has none, or
    when no clip has a speaker: see `speaker_note`)."""
    rows = [e for e in per_speaker if e["system"] == system]
    if not rows or all(e["speaker"] == "" for e in rows):
        return ""
    lines = ["| system | setting | speaker | clips | PESQ-WB | STOI | RMS ratio |", "|---|---|---|---|---|---|---|"]
    for e in rows:
        lines.append(f"| {e['system']} | {e['setting']} | {e['speaker'] or TOP_LEVEL} | {e['clips']} | "
                     f"{_num(e['pesq_wb'], 2)} | "
                     f"{_num(e['stoi'], 3)} | {_num(e['rms_ratio'], 2)} |")
    return "\n".join(lines)


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "-"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def save_rd_plot(path: str | Path, systems: list[dict[str, Any]], metric: str, ylabel: str) -> Path:
    """Quality (`metric`) against real kbps, one line per system, settings written at the points.
    A system without a known bitrate (--reference on WAV files) is a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = list(dict.fromkeys(e["system"] for e in systems))
    xs_all: list[float] = []
    for name in names:
        colour = SYSTEM_COLOURS.get(name, "#555555")
        entries = [e for e in systems if e["system"] == name and _finite(e.get(metric))]
        placed = sorted((e for e in entries if _finite(e.get("kbps_actual"))), key=lambda e: e["kbps_actual"])
        if placed:
            xs = [e["kbps_actual"] for e in placed]
            xs_all += xs
            ax.plot(xs, [e[metric] for e in placed], marker="o", color=colour, label=name,
                    linewidth=2.4 if name == "telucodec" else 1.6)
            for e in placed:
                ax.annotate(e["setting"], (e["kbps_actual"], e[metric]), textcoords="offset points",
                            xytext=(4, 5), fontsize=7, color=colour)
        for e in entries:
            if not _finite(e.get("kbps_actual")):
                ax.axhline(e[metric], color=colour, linestyle="--", label=f"{name} {e['setting']}")
    ax.set_xscale("log")
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        ax.set_xlim(lo / 1.25, hi * 1.35)
        ticks = [t for t in (0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64) if lo / 1.25 <= t <= hi * 1.35]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("real bitrate (kbps, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} vs real bitrate", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if names:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1160px;
       color: #1d1d1f; background: #fafafa; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 20px 0 6px; font-family: ui-monospace, monospace; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { padding: 4px 9px; border-bottom: 1px solid #e6e6e6; text-align: right; white-space: nowrap; }
th { background: #f0f0f2; font-weight: 600; }
td.name, th.name { text-align: left; }
tr.sys td:first-child { border-left: 5px solid var(--c); }
tr.telucodec td { font-weight: 600; }
.plots { display: flex; gap: 12px; margin-top: 14px; }
.plots img { width: 49%; border: 1px solid #ddd; background: #fff; }
.group { display: flex; gap: 10px; margin-bottom: 10px; }
.card { flex: 1 1 0; min-width: 250px; max-width: 380px; background: #fff; border: 1px solid #e2e2e2; border-top: 4px solid var(--c);
        border-radius: 4px; padding: 6px 8px 8px; }
.card .label { font-weight: 600; font-size: 14px; }
.card .scores { font-size: 12px; color: #555; margin: 2px 0 6px; font-variant-numeric: tabular-nums; }
.card audio { width: 100%; height: 32px; display: block; }
.card img { width: 100%; display: block; margin-top: 6px; }
ul.notes { font-size: 13px; color: #7a4b00; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(relative: str) -> str:
    """A relative URL for an attribute: percent-encoded path parts, then HTML-escaped."""
    return _e(quote(relative, safe="/"))


def _summary_html(systems: list[dict[str, Any]]) -> str:
    head = "".join(f'<th class="{"name" if i < 2 else ""}">{_e(h)}</th>' for i, (h, _, _) in enumerate(COLUMNS))
    body = []
    for entry in systems:
        name = str(entry.get("system"))
        cells = "".join(f'<td class="{"name" if i < 2 else ""}">{_e(fmt(entry.get(key)))}</td>'
                        for i, (_, key, fmt) in enumerate(COLUMNS))
        colour = SYSTEM_COLOURS.get(name, "#555555")
        body.append(f'<tr class="sys {_e(_safe(name))}" style="--c: {colour}">{cells}</tr>')
    return f'<table class="summary"><tr>{head}</tr>\n' + "\n".join(body) + "</table>"


def _card(out: Path, folder: Path, spec_dir: Path, system: str, setting: str, file_name: str,
          row: dict[str, Any] | None, vmax: float) -> str:
    """One signal: its name and scores, an audio player and its spectrogram (colour scale
    topped at `vmax` dB, the original's loudest bin, so a level loss shows as a darker picture)."""
    wav, sr = sf.read(str(folder / file_name), dtype="float32")
    label = "original" if row is None else f"{system} {setting}"
    spec = spec_dir / (Path(file_name).stem + ".png")
    save_spectrograms(spec, {label: np.asarray(wav)}, sr, vmax=vmax)
    if row is None:
        scores = f"{len(wav) / sr:.1f} s, 16 kHz"
    else:
        scores = (f"{_fmt(2)(row.get('kbps_actual'))} kbps · PESQ {_fmt(2)(row.get('pesq_wb'))} · "
                  f"STOI {_fmt(3)(row.get('stoi'))}")
    audio_rel = (folder / file_name).relative_to(out).as_posix()
    spec_rel = spec.relative_to(out).as_posix()
    colour = SYSTEM_COLOURS.get(system, "#888888")
    return (f'<div class="card" style="--c: {colour}"><div class="label">{_e(label)}</div>'
            f'<div class="scores">{_e(scores)}</div>'
            f'<audio controls preload="metadata" src="{_href(audio_rel)}"></audio>'
            f'<img src="{_href(spec_rel)}" alt="{_e("spectrogram of " + label)}" loading="lazy"></div>')


def _clip_html(out: Path, name: str, folder: Path, entries: list[tuple[str, str, str, dict[str, Any] | None]]) -> str:
    """One clip: the original and telucodec on the first row, then a row per baseline."""
    spec_dir = out / SPECTROGRAM_DIR / folder.name
    spec_dir.mkdir(parents=True, exist_ok=True)
    original, _ = sf.read(str(folder / ORIGINAL_FILE), dtype="float32")
    vmax = float(log_spectrogram(original).max())
    groups: dict[str, list[str]] = {}
    for system, setting, file_name, row in entries:
        group = "telucodec" if system == "original" else system
        card = _card(out, folder, spec_dir, system, setting, file_name, row, vmax)
        groups.setdefault(group, []).append(card)
    rows = "\n".join(f'<div class="group">{"".join(cards)}</div>' for cards in groups.values())
    return f"<section><h3>{_e(name)}</h3>\n{rows}</section>"


def write_report(out: str | Path, results: dict[str, Any], rows: list[dict[str, Any]],
                 clips: list[tuple[str, str]]) -> Path:
    """Write out/report.html. `clips`: (clip name, folder holding its WAVs) for the clips to play;
    `rows`: the per-clip scores (results.csv rows) for their score columns."""
    out = Path(out)
    systems = results["systems"]
    total = float(results.get("duration_s") or 0.0)
    meta = [f"data: {results.get('data_dir')}",
            f"model: {results.get('model_id') or '–'}"
            + (f" (the shipped model {results['model_name']})" if results.get("model_name") else ""),
            f"{results.get('clips', 0)} clips, {total:.1f} s of audio"
            + (f", {len(results.get('skipped', []))} skipped" if results.get("skipped") else "")]
    if results.get("reference"):
        meta.append(f"reference: {results['reference']}")
    parts = ["<h1>telucodec listening report</h1>",
             *(f'<p class="meta">{_e(m)}</p>' for m in meta),
             "<h2>Summary</h2>",
             '<p class="meta">Means over clips; kbps actual = bytes produced × 8 / duration; '
             "PESQ p10 = 10th percentile over clips.</p>",
             _summary_html(systems),
             '<div class="plots"><img src="rd_pesq.png" alt="PESQ-WB vs bitrate">'
             '<img src="rd_stoi.png" alt="STOI vs bitrate"></div>']
    notes = results.get("warnings", [])
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    heading, lines = skipped_lines(results.get("skipped", []), limit=None)
    if heading:
        parts.append(f'<h2>Skipped</h2>\n<p class="meta">{_e(heading)}</p>')
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>")
    if clips:
        parts.append("<h2>Listen</h2>")
        parts.append(f'<p class="meta">{_e(FOLDER_NOTE)}</p>')
    for name, folder in clips:
        folder_path = Path(folder)
        entries: list[tuple[str, str, str, dict[str, Any] | None]] = [("original", "", ORIGINAL_FILE, None)]
        for e in systems:
            file_name = system_file(e["system"], e["setting"])
            row = next((r for r in rows if r["clip"] == name and r["system"] == e["system"]
                        and r["setting"] == e["setting"]), None)
            if row is not None and (folder_path / file_name).is_file():
                entries.append((e["system"], e["setting"], file_name, row))
        parts.append(_clip_html(out, name, folder_path, entries))
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>telucodec eval: {_e(results.get('data_dir'))}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
