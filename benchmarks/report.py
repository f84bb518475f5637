"""Readable outputs of a benchmark run: a Markdown table and PNG plots."""

from __future__ import annotations

from pathlib import Path


def _fmt(value, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(result: dict, reference: str | None = None) -> str:
    rows = result["rows"]
    lengths = sorted({r["audio_s"] for r in rows})
    specs = list(dict.fromkeys(r["candidate"] for r in rows))
    by = {(r["candidate"], r["audio_s"]): r for r in rows}
    host = result["host"]
    lines = [
        f"Host: {host['cpu']['model']} ({host['cpu']['arch']}, {host['cpu']['cores']} cores, "
        f"{', '.join(host['cpu']['flags']) or 'no listed SIMD flags'}), {host['ram_gib']} GiB, {host['os']}"
        + (f", board {host['board']['model']}" if host["board"].get("model") else "")
        + f"; threads {result['config']['threads']}, {result['config']['repeats']} interleaved repeats, "
        f"commit {host.get('commit')}.",
        "",
        "| candidate | precision | size MB | load s | first result s | peak RSS MB | WER % | "
        + " | ".join(f"{length:g} s: e2e ms (RTF)" for length in lengths)
        + " |",
        "|---" * (7 + len(lengths)) + "|",
    ]
    for spec in specs:
        first = by[(spec, lengths[0])]
        cells = [f"{by[(spec, le)]['e2e_ms']['median']:.0f} ({by[(spec, le)]['rtf']:.3f})" for le in lengths]
        lines.append(
            f"| {spec} | {first['precision']} | {first['size_mb']:.1f} | {first['load_s']:.2f} | "
            f"{first['first_result_s']:.2f} | {first['peak_rss_mb']:.0f} | {first['wer'] * 100:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "| candidate | audio s | front end ms | encoder ms | decode ms | rest ms | tokens | ms/token | floor ms/token "
        "| x of floor | e2e min-max ms |" + (f" speed-up vs {reference} |" if reference else ""),
        "|---" * (11 + bool(reference)) + "|",
    ]
    for spec in specs:
        for length in lengths:
            r = by[(spec, length)]
            speedup = ""
            if reference and (reference, length) in by:
                speedup = f" {by[(reference, length)]['e2e_ms']['median'] / r['e2e_ms']['median']:.2f}x |"
            lines.append(
                f"| {spec} | {length:g} | {_fmt(r.get('front_end_ms'))} | {_fmt(r['encoder_ms'])} | "
                f"{_fmt(r['decode_ms'])} | {_fmt(r.get('rest_ms'))} | {r['tokens']:.0f} | "
                f"{_fmt(r['ms_per_token'], '.1f')} | {_fmt(r.get('floor_ms_per_token'), '.2f')} | "
                f"{_fmt(r.get('x_of_floor'), '.1f')} | {r['e2e_ms']['min']:.0f}-{r['e2e_ms']['max']:.0f} |{speedup}"
            )
    if host.get("copy_bandwidth_gbs"):
        lines.append(
            "\nFront end: audio to log-mel. Decode: the decoder's calls as the runtime times them (for peers that do "
            "not time their decoder, e2e less encoder and front end); rest: what e2e spends outside the three. "
            f"ms/token: decode time (prompt calls included) over generated tokens. Floor: the decoder weights one "
            f"step reads over this host's copy bandwidth, {host['copy_bandwidth_gbs']:.1f} GB/s "
            "(benchmarks/bandwidth.py; caches and activations not counted, so the floor is a lower bound)."
        )
    for spec, error in result.get("missing", {}).items():
        lines.append(f"\nNot measured: `{spec}`: {error}")
    return "\n".join(lines) + "\n"


def plot_all(result: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    specs = list(dict.fromkeys(r["candidate"] for r in rows))
    lengths = sorted({r["audio_s"] for r in rows})
    pick = min(lengths, key=lambda s: abs(s - 5.0))
    by = {(r["candidate"], r["audio_s"]): r for r in rows}
    paths = []

    fig, ax = plt.subplots(figsize=(7, 5))
    for spec in specs:
        r = by[(spec, pick)]
        ax.scatter(r["e2e_ms"]["median"], r["wer"] * 100, s=60)
        ax.annotate(
            spec, (r["e2e_ms"]["median"], r["wer"] * 100), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"end-to-end latency on a {pick:g} s clip, ms (log)")
    ax.set_ylabel("WER % on real speech")
    ax.set_title("Latency vs accuracy (lower left is better)")
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out_dir / "latency_vs_wer.png"))

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(specs) + 1.5))
    longest = min(lengths, key=lambda s: abs(s - 10.0))
    ys = range(len(specs))
    parts = {  # label -> (colour, ms per candidate); a candidate that does not split its time has it all in decode
        "model load": ("#bbbbbb", [by[(s, longest)]["load_s"] * 1000 for s in specs]),
        "front end": ("#55a868", [by[(s, longest)].get("front_end_ms") or 0 for s in specs]),
        "encoder": ("#4c72b0", [by[(s, longest)]["encoder_ms"] or 0 for s in specs]),
        "decoder": ("#dd8452", [by[(s, longest)]["decode_ms"] or by[(s, longest)]["e2e_ms"]["median"] for s in specs]),
        "rest": ("#8172b3", [by[(s, longest)].get("rest_ms") or 0 for s in specs]),
    }
    left = [0.0] * len(specs)
    for label, (colour, widths) in parts.items():
        ax.barh(ys, widths, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(list(ys), specs, fontsize=8)
    ax.set_xlabel(f"ms (load once, then one {longest:g} s clip)")
    ax.set_title("Latency breakdown")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "latency_breakdown.png"))

    fig, ax = plt.subplots(figsize=(7, 5))
    for spec in specs:
        ax.plot(lengths, [by[(spec, le)]["e2e_ms"]["median"] for le in lengths], marker="o", label=spec)
    ax.set_xlabel("clip length, s")
    ax.set_ylabel("end-to-end latency, ms")
    ax.set_yscale("log")
    ax.set_title("Latency vs clip length (a 30 s window costs the same for any clip)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "latency_vs_length.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
