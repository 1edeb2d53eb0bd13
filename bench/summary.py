#!/usr/bin/python3
"""summary.py RESULTS DOC BUILD_DIR [SECONDS]

Writes the summary table of one full `bash bench/run-all.sh BUILD_DIR` run
into DOC (docs/PERFORMANCE.md), between the lines
    <!-- summary:begin -->  and  <!-- summary:end -->
(added under DOC's first line if it has none), leaving the rest of DOC as it
is. RESULTS holds that run's RESULT lines:
    RESULT <name> ours=<x> baseline=<y> unit=<u> ratio=<x/y> [target=<t> cmp=<le|ge>]
where a target is on the ratio: met when ratio <= t (le) or >= t (ge).
The heading says when, on what machine (nproc, CPU, kernel, OS) and build
(build type, commit) the run was made.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

BEGIN = "<!-- summary:begin -->"
END = "<!-- summary:end -->"


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) < 2 or words[0] != "RESULT":
                continue
            fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            rows.append((words[1], fields))
    return rows


def met(fields):
    if "target" not in fields:
        return "—"
    try:
        ratio, target = float(fields["ratio"]), float(fields["target"])
    except (KeyError, ValueError):
        return "?"
    ok = ratio <= target if fields.get("cmp") == "le" else ratio >= target
    return "yes" if ok else "**no**"


def target(fields):
    if "target" not in fields:
        return "—"
    return ("≤ " if fields.get("cmp") == "le" else "≥ ") + fields["target"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def build_type(build):
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            for opt in json.load(f):
                if opt.get("name") == "buildtype":
                    return opt.get("value", "unknown")
    except (OSError, ValueError):
        pass
    return "unknown"


def commit(root):
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def table(rows, build, seconds):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    n_met = sum(1 for _, f in rows if met(f) == "yes")
    n_target = sum(1 for _, f in rows if "target" in f)
    took = f", {seconds} s" if seconds else ""
    out = [
        BEGIN,
        "## Summary of the last full run (generated)",
        "",
        f"Written by `bash bench/run-all.sh` (full mode{took}) on {now}: "
        f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, "
        f"{os_name()}, Linux {platform.release()}; build type {build_type(build)}, "
        f"commit {commit(root)}. Each row is one RESULT line of that run: ours and "
        "the baseline are measured in the same run; the target is on the ratio "
        f"(ours/baseline). {n_met} of {n_target} targets met. Edit the prose below, "
        "not this table: the next full run replaces it.",
        "",
        "| benchmark | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in rows:
        unit = f.get("unit", "")
        out.append(f"| {name} | {f.get('ours', '?')} {unit} | {f.get('baseline', '?')} {unit} "
                   f"| {f.get('ratio', '?')} | {target(f)} | {met(f)} |")
    out.append(END)
    return out


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: summary.py RESULTS DOC BUILD_DIR [SECONDS]")
    results, doc, build = sys.argv[1:4]
    seconds = sys.argv[4] if len(sys.argv) == 5 else ""
    rows = parse(results)
    if not rows:
        sys.exit("summary.py: no RESULT lines in " + results)
    with open(doc) as f:
        lines = f.read().split("\n")
    block = table(rows, build, seconds)
    if BEGIN in lines and END in lines and lines.index(BEGIN) < lines.index(END):
        lines[lines.index(BEGIN):lines.index(END) + 1] = block
    else:
        lines[1:1] = [""] + block
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, doc)
    print(f"summary.py: {len(rows)} rows written to {doc}")


if __name__ == "__main__":
    main()
