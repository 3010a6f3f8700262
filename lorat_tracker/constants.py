"""Plain values the command line needs to build its parser, kept apart so that ``lorat --help`` and
argument errors import nothing heavy (torch, timm, cv2 load only when a command runs)."""

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
NETWORK_PRECISIONS = PRECISIONS + ("int8",)  # a tracker's precision= over all backends (int8: ONNX files only)

VARIANTS = ("B-224", "B-378", "L-224", "L-378", "g-224", "g-378")  # the released models

COMPILE_MODES = (False, True, "cudagraph", "inductor", "onednn")  # LoRATTracker(compile=...), --compile off/on/...

SAM_PRECISIONS = ("fp32", "bf16", "fp16")  # BoxToMask(precision=...), --sam-precision
SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")  # Meta's released SAM sizes, --sam-type
SAM2_SIZES = ("tiny", "small", "base_plus", "large")  # Meta's SAM 2.1 hiera sizes, --sam-type with --masks sam2

TOLERANCE_PX = 1e-3  # lorat selftest: largest box deviation from the official pipeline's outputs

# Where the network runs (LoRATTracker(..., backend=...)); the registry with extras and devices is
# lorat_tracker.backends.BACKENDS.
BACKEND_NAMES = ("torch", "onnxruntime", "openvino", "tensorrt")
EXPORT_FORMATS = ("safetensors", "onnx")  # lorat export --format
