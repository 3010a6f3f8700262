#!/usr/bin/env bash
# The GPU numbers in a few minutes, for a machine with one CUDA GPU: one JSON (default gpu_check.json).
#   bash benchmarks/gpu_check.sh [OUT.json]
# Runs the CUDA selftest, B-224 fp16 eager vs CUDA graphs, TensorRT fp16 vs torch fp16 (where tensorrt is
# installed), a batched evaluation (batch 1 vs 8) and a training step; each part's JSON is merged into OUT.
# Never a test dependency: tests run on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check.json}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
run() {  # run NAME CMD...: its exit code and the last lines of its output go into the report
    local name="$1"; shift
    echo "== $name: $*" >&2
    timeout 900 "$@" >"$TMP/$name.log" 2>&1
    echo $? >"$TMP/$name.rc"
    tail -n 20 "$TMP/$name.log" >&2
}
run selftest python -m lorat_tracker selftest --device cuda --precision fp32
run speed python benchmarks/speed.py --variant B-224 --device cuda --precision fp32,fp16 --batch-size 1,8 \
    --frames 30 --warmup 5 --iou-frames 16 --no-progress --json "$TMP/speed.json"
run speed_cudagraph python benchmarks/speed.py --variant B-224 --device cuda --precision fp16 --batch-size 1,8 \
    --frames 30 --warmup 5 --iou-frames 0 --compile cudagraph --no-progress --json "$TMP/speed_cudagraph.json"
run backends python benchmarks/backends.py --variant B-224 --device cuda --batch-size 1,4 --rounds 7 --warmup 3 \
    --iou-frames 8 --no-progress --json "$TMP/backends.json"
run batched python benchmarks/batched.py --variant B-224 --device cuda --precision fp16 --batch-size 1,8 \
    --sequences 16 --frames 20 --json "$TMP/batched.json"
run train_step python benchmarks/train_speed.py --variant B-224 --device cuda --precision fp16 --batch-size 32 \
    --iterations 5 --warmup 2 --json "$TMP/train_step.json"
python - "$TMP" "$OUT" <<'PY'
import json, pathlib, subprocess, sys
tmp, out = pathlib.Path(sys.argv[1]), sys.argv[2]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
report = {"gpu": gpu, "parts": {}}
for rc in sorted(tmp.glob("*.rc")):
    name = rc.stem
    part = {"exit": int(rc.read_text()), "log_tail": (tmp / f"{name}.log").read_text()[-4000:]}
    if (tmp / f"{name}.json").exists():
        part["result"] = json.loads((tmp / f"{name}.json").read_text())
    report["parts"][name] = part
pathlib.Path(out).write_text(json.dumps(report, indent=1) + "\n")
print(f"wrote {out}: " + ", ".join(f"{k} exit {v['exit']}" for k, v in report["parts"].items()))
PY
