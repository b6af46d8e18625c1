"""A trained run as an ONNX model, for runtimes without Python training code (ONNX Runtime, the browser's
onnxruntime-web, mobile runtimes).

The run's family says what is exported (`Family.graph`): an image classifier's network (normalised images
-> logits), a language model's forward over a token sequence (token ids -> next-token logits), a GAN's
generator (noise [and class ids] -> pixels in [0, 1]). The preprocessing stays outside the graph: an image
classifier's mean, standard deviation and classes are in the run's inputs.json, a language model's
vocabulary in its tokenizer.json.

torch.onnx.export traces the network with torch.export (the dynamo exporter, torch's default since 2.9),
which needs the `onnx` and `onnxscript` packages: `pip install "dl-pillars[onnx]"`. The batch axis, and a
language model's length axis (at most a GPT's context), are left free in the graph.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from pillars.config import ConfigError, atomic_path


@dataclass
class Graph:
    """What a family exports: the module, an example of each input (real data, which the exporter traces),
    the free axes of each input ({axis: name} or {axis: (name, largest size)}) and the outputs' names."""
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic: dict[str, dict[int, "str | tuple[str, int | None]"]]
    outputs: list[str]


def exporter_missing() -> str:
    """"" when the exporter's packages are installed, else what to install."""
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    return "" if not missing else (f"exporting to ONNX needs the packages {' and '.join(missing)}: "
                                   "pip install \"dl-pillars[onnx]\"")


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def quiet_exporter():
    """The exporter's notes (torchvision's operators skipped, deprecations) kept off the user's terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def dims(graph: Graph) -> tuple[dict[int, torch.export.Dim], ...]:
    """A Graph's free axes as torch.export dimensions, one per input; axes of one name are one dimension
    (the batch of a conditional generator's noise and classes)."""
    made: dict[str, torch.export.Dim] = {}
    out = []
    for name in graph.inputs:
        axes = {}
        for axis, spec in graph.dynamic.get(name, {}).items():
            dim, largest = spec if isinstance(spec, tuple) else (spec, None)
            if dim not in made:
                made[dim] = torch.export.Dim(dim, max=largest) if largest else torch.export.Dim(dim)
            axes[axis] = made[dim]
        out.append(axes)
    return tuple(out)


def export(graph: Graph, path: Path) -> None:
    """Write `graph` as an ONNX model to `path`, atomically (a temporary file in its folder, then renamed):
    an interrupted export leaves no half-written file. The outputs' free axes are named after the inputs'."""
    import onnx
    module = graph.module.eval()
    names = list(graph.inputs)
    path = Path(path)
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(module, tuple(graph.inputs.values()), input_names=names,
                                    output_names=graph.outputs, dynamic_shapes=dims(graph),
                                    external_data=False, verbose=False)
    model = program.model_proto
    named_output_axes(model, graph)
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def named_output_axes(model, graph: Graph) -> None:
    """Name the outputs' free axes as the first input's (batch; a language model's length): the exporter
    can leave an axis fixed at the example's size in an output's declared shape (the LSTM's length), and
    ONNX Runtime then warns at every call of another size."""
    first = graph.dynamic.get(next(iter(graph.inputs)), {})
    for output in model.graph.output:
        shape = output.type.tensor_type.shape
        for axis, spec in first.items():
            if axis < len(shape.dim):
                shape.dim[axis].dim_param = spec[0] if isinstance(spec, tuple) else spec


def export_run(run_dir: Path, out: Path | None = None, device: str = "cpu",
               log=lambda line: None) -> Path:
    """Export the trained run `run_dir` to `out` (default RUN_DIR/model.onnx) and return the path."""
    from pillars import runs
    why = exporter_missing()
    if why:
        raise ConfigError(why)
    run = runs.load(Path(run_dir), device, need_data=False, log=log)
    graph = run.task.family.graph(run)
    path = Path(out) if out is not None else Path(run_dir) / "model.onnx"
    export(graph, path)
    return path
