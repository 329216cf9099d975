"""Where networks run: the one ONNX Runtime session builder.

Every ONNX file fgbg opens (depth estimators, the cut-out network, exported models) goes
through :func:`onnx_session`, so thread counts, optimisation level and the error for a file
that is missing or not a model are the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from fgbg.errors import UserError

CPU_PROVIDERS = ["CPUExecutionProvider"]


def onnx_session(path: Path | str, threads: int = 1, providers: list[str] | None = None):
    """An ``onnxruntime.InferenceSession`` for the ONNX file ``path``.

    Args:
        path: the .onnx file.
        threads: intra-op threads (one network call uses this many cores; 0 = ONNX Runtime's
            default, one per physical core); inter-op is 1, execution sequential, graph
            optimisation at its highest level.
        providers: ONNX Runtime execution providers, in order of preference; CPU if None.

    Raises:
        UserError: the file does not exist, or ONNX Runtime cannot load it (names the file).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX model file; give the path of an .onnx file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or CPU_PROVIDERS)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a valid ONNX model, ONNX Runtime cannot load it ({reason})") from None
