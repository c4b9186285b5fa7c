"""The drill's timeline as text and as a picture (PNG).

Each case is one row of phases (name -> modeled seconds since the warning), drawn on one axis so
the two cases compare at a glance.
"""

from __future__ import annotations

BAR_WIDTH = 60


def text(cases):
    """A fixed-width timeline per case: each phase on its own line with a bar to its time."""
    horizon = max((max(case["phases"].values()) for case in cases if case.get("phases")), default=1.0) or 1.0
    lines = []
    for case in cases:
        lines.append(
            f"{case['az_case']}: {case.get('interrupted_instance_id')} -> {case.get('replacement_instance_id')}"
            f"  RTO {case.get('rto_seconds')} s, RPO {case.get('rpo_seconds')} s, "
            f"canaries {'intact' if case.get('canary_intact') else 'DAMAGED'}, "
            f"EIP {'on the replacement' if case.get('eip_on_replacement') else 'NOT moved'}"
        )
        serving = case.get("serving") or {}
        if serving.get("old_until") is not None and serving.get("replacement_from") is not None:
            lines.append(
                f"  {case.get('interrupted_instance_id')} served until {serving['old_until']:.1f} s; "
                f"{case.get('replacement_instance_id')} serves from {serving['replacement_from']:.1f} s "
                f"(down {serving['replacement_from'] - serving['old_until']:.1f} s)"
            )
        for name, seconds in sorted(case.get("phases", {}).items(), key=lambda item: item[1]):
            extent = "#" * max(1, int(round(BAR_WIDTH * seconds / horizon))) if seconds > 0 else "|"
            lines.append(f"  {name:20} {seconds:7.1f} s  {extent}")
        lines.append("")
    return "\n".join(lines)


def png(cases, path, title):
    """Draw the phases of every case on one time axis (modeled seconds since the warning)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(cases), 1, figsize=(11, 2.8 * len(cases)), squeeze=False, sharex=True)
    horizon = max((max(case["phases"].values()) for case in cases if case.get("phases")), default=1.0)
    for row, case in zip(axes[:, 0], cases):
        phases = sorted(case.get("phases", {}).items(), key=lambda item: item[1])
        for index, (name, seconds) in enumerate(phases):
            row.barh(index, seconds, color="#4477aa" if name not in ("warning", "success") else "#cc6677", height=0.6)
            row.text(seconds + horizon * 0.01, index, f"{name} {seconds:.1f} s", va="center", fontsize=8)
        serving = case.get("serving") or {}
        if serving.get("old_until") is not None and serving.get("replacement_from") is not None:
            # The old instance's serving period, the downtime, the replacement's serving period.
            row.axvspan(0, serving["old_until"], color="#117733", alpha=0.12, label="old instance serves")
            row.axvspan(
                serving["old_until"],
                serving["replacement_from"],
                color="#ddcc77",
                alpha=0.35,
                label=f"down {serving['replacement_from'] - serving['old_until']:.1f} s",
            )
            row.axvspan(
                serving["replacement_from"], horizon * 1.35, color="#4477aa", alpha=0.12, label="replacement serves"
            )
            row.legend(loc="lower right", fontsize=8)
        row.set_yticks([])
        row.set_title(
            f"{case['az_case']}: RTO {case.get('rto_seconds')} s, RPO {case.get('rpo_seconds')} s, "
            f"canaries {'intact' if case.get('canary_intact') else 'DAMAGED'}",
            fontsize=10,
        )
        row.set_xlim(0, horizon * 1.35)
        row.invert_yaxis()
    axes[-1, 0].set_xlabel("modeled seconds since the interruption warning")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path
