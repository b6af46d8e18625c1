"""`pillars demo`: trained runs on a local web page (Gradio), one tab per run.

    pip install 'dl-pillars[demo]'
    pillars demo runs/fashion-cnn runs/sotu-char-lstm      # every run under runs/ when none is named

Each tab does what its run's task does, through the Python API (`pillars.load`): an image classifier
classifies an uploaded photo or a drawing (its top classes, and the Grad-CAM map of the predicted class,
Selvaraju et al. 2017), a spoken-digit classifier an uploaded WAV file; a language model continues a
prompt, shown as it is written; a translation model translates a sentence; a GAN draws images (of a class,
for a conditional one). A run of another kind, or one that fails to load, gets a tab that says so.

The page works offline and stays on this machine unless told otherwise: it binds 127.0.0.1, opens no
share link, sends no analytics or version checks, and Gradio serves its fonts and scripts itself. Uploads
are limited in size, and a bad input (a text file given as an image) is answered in the page by the
error `pillars predict` would print, never by a traceback.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pillars.config import ConfigError, note

HOST = "127.0.0.1"
PORT = 7860
MAX_UPLOAD_MB = 10    # photos and recordings are small; Gradio refuses larger uploads before reading them
TOP_K = 5             # classes shown of a prediction
CAM_SIDE = 224        # pixels of the Grad-CAM overlay shown (the model's input, upscaled)
CHUNK = 16            # tokens generated between two updates of the streamed text
INSTALL = "pip install 'dl-pillars[demo]'"


def gradio():
    """The gradio module, with its telemetry and version check off (read when its first Blocks is made);
    a ConfigError naming the extra to install when it is missing."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError(f"the demo needs Gradio, an optional extra: {INSTALL}") from None
    return gr


def found_runs(root: Path) -> list[Path]:
    """The run folders under `root` (those holding a config.toml, checkpoints aside), in name order."""
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("config.toml") if "checkpoints" not in p.parts)


def shown(fn: Callable) -> Callable:
    """`fn` as a page's handler: the error of a bad input (a ConfigError, a DataError: what the command line
    prints) becomes a message in the page."""
    import functools
    import inspect

    from pillars.data.registry import DataError
    gr = gradio()

    def message(e: Exception) -> Exception:
        note(f"refused: {e}")   # the server's log gets the line; the page, the message until it is closed
        return gr.Error(str(e), duration=None, print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streamed(*args):
            try:
                yield from fn(*args)
            except (ConfigError, DataError) as e:
                raise message(e) from None
        return streamed

    @functools.wraps(fn)
    def handler(*args):
        try:
            return fn(*args)
        except (ConfigError, DataError) as e:
            raise message(e) from None
    return handler


# ----------------------------------------------------------------------------- image classifiers

def model_pixels(run, image) -> np.ndarray:
    """An image (Pillow) as uint8 pixels of the model's side, as `pillars predict` converts it: an image that
    already has the model's side (a test image saved as a PNG file) as it is, a photo as the training images
    were made (light objects on black: Fashion-MNIST's conversion, inverted when its background is light)."""
    from pillars.data.folder import as_fashion_mnist, to_array
    inputs = run.loaded.job.inputs
    if image.size == (inputs.size, inputs.size):
        return np.asarray(image.convert("L" if inputs.channels == 1 else "RGB"), dtype=np.uint8).copy()
    if inputs.light_on_dark:
        return as_fashion_mnist(image, inputs.size)[0]
    return to_array(image, inputs.size, inputs.channels)


def cam_overlay(run, pixels: np.ndarray) -> np.ndarray:
    """The Grad-CAM map of the predicted class over the model's input pixels, as (CAM_SIDE, CAM_SIDE, 3) uint8:
    `explain.grad_cam` on the last spatial feature map, coloured as explain's gradcam.png (jet, alpha 0.45)."""
    from matplotlib import colormaps
    from PIL import Image

    from pillars import explain
    from pillars.tasks.images import normalised, scaled_pixels
    inputs, model = run.loaded.job.inputs, run.model
    grey = pixels if pixels.ndim == 2 else np.asarray(Image.fromarray(pixels).convert("L"))
    shaped = grey if inputs.channels == 1 else pixels
    if shaped.ndim == 2 and inputs.channels == 3:
        shaped = np.repeat(shaped[..., None], 3, -1)
    x = normalised(scaled_pixels(shaped[None]), inputs.mean, inputs.std).to(run.device)
    cam, _ = explain.grad_cam(model, x, explain.last_feature_map(model, x))
    def big(a: np.ndarray) -> np.ndarray:   # uint8 (H, W) -> floats in [0, 1], (CAM_SIDE, CAM_SIDE)
        return np.asarray(Image.fromarray(a).resize((CAM_SIDE, CAM_SIDE), Image.Resampling.BILINEAR)) / 255

    base = big(grey)[..., None]
    heat = colormaps["jet"](big((cam[0].cpu().numpy() * 255).round().astype(np.uint8)))[..., :3]
    return (255 * ((1 - 0.45) * base + 0.45 * heat)).round().astype(np.uint8)


def classify_image(run, image) -> tuple[dict[str, float], np.ndarray]:
    """The top classes of a Pillow image, and its Grad-CAM overlay."""
    pixels = model_pixels(run, image)
    probs = run.predict(pixels, invert="no")   # already converted: read as they are
    return dict(list(probs.items())[:TOP_K]), cam_overlay(run, pixels)


def read_upload(path: str, read: Callable):
    """`read(path)` of an uploaded file; an error names the file as the user called it, not Gradio's copy."""
    from pillars.data.registry import DataError
    try:
        return read(path)
    except DataError as e:
        raise type(e)(str(e).replace(str(path), Path(path).name)) from None


def uploaded_image(path: str | None):
    """The uploaded file as a Pillow image."""
    from pillars.data.folder import open_image
    if not path:
        raise ConfigError("upload an image first (PNG or JPEG)")
    return read_upload(path, lambda p: open_image(Path(p)))


def drawn_image(drawing: dict | None):
    """A sketchpad's drawing as a Pillow image, dark strokes on white (transparency composited on white)."""
    from PIL import Image
    composite = drawing.get("composite") if isinstance(drawing, dict) else None
    if composite is None or not np.asarray(composite)[..., -1].any():
        raise ConfigError("draw something on the sketchpad first")
    rgba = Image.fromarray(np.asarray(composite, dtype=np.uint8)).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def image_tab(gr, run) -> None:
    gr.Markdown("Upload a photo of one object, or draw one (dark on white); the Grad-CAM map shows where the "
                "evidence for the predicted class lies.")
    with gr.Row():
        with gr.Column():
            with gr.Tab("photo"):
                photo = gr.File(label="photo (PNG or JPEG)", type="filepath", elem_id="photo")
                classify = gr.Button("classify", variant="primary", elem_id="classify-photo")
            with gr.Tab("sketchpad"):
                pad = gr.Sketchpad(label="drawing", type="numpy", image_mode="RGBA", elem_id="sketchpad")
                classify_drawing = gr.Button("classify the drawing", elem_id="classify-drawing")
        with gr.Column():
            label = gr.Label(num_top_classes=TOP_K, label="classes", elem_id="classes")
            cam = gr.Image(label="Grad-CAM", type="numpy", interactive=False, elem_id="gradcam")
    classify.click(shown(lambda path: classify_image(run, uploaded_image(path))), photo, [label, cam],
                   api_name="classify")
    classify_drawing.click(shown(lambda drawing: classify_image(run, drawn_image(drawing))), pad, [label, cam],
                           api_name="classify_drawing")


def speech_tab(gr, run) -> None:
    def classify(path):
        if not path:
            raise ConfigError("upload a WAV recording first")
        return dict(list(read_upload(path, run.predict).items())[:TOP_K])

    gr.Markdown("Upload a WAV recording of one spoken digit.")
    with gr.Row():
        audio = gr.Audio(label="recording (WAV)", type="filepath", sources=["upload"], elem_id="recording")
        label = gr.Label(num_top_classes=TOP_K, label="digits", elem_id="digits")
    gr.Button("classify", variant="primary", elem_id="classify-recording").click(
        shown(classify), audio, label, api_name="classify_recording")


# ----------------------------------------------------------------------------- text, translation, images

def streamed_text(run, prompt: str, length: int, temperature: float, seed: int) -> Iterator[str]:
    """A language model's continuation of `prompt` as it grows, CHUNK tokens at a time: the model's own
    `generate` continues the text so far with one seeded generator, so the draws are those of one call."""
    import torch

    from pillars.tasks.language import unknown_tokens
    loaded, length = run.loaded, int(length)
    if length < 1 or not temperature >= 0:
        raise ConfigError(f"the length must be at least 1 and the temperature at least 0, not {length} and "
                          f"{temperature}")
    unknown_tokens(loaded, prompt)   # a note on stderr of what became <unk>, as `pillars sample` gives
    tok = loaded.job.tokenizer
    ids = torch.from_numpy(tok.encode(prompt or "\n\n")).long().to(run.device)[None]
    if ids.shape[1] == 0:
        raise ConfigError(f"the prompt {prompt!r} has no tokens the model knows")
    g = torch.Generator(device=run.device).manual_seed(int(seed))
    done = 0
    with torch.no_grad():
        while done < length:
            step = min(CHUNK, length - done)
            ids = run.model.generate(ids, step, temperature, generator=g)
            done += step
            yield tok.decode(ids[0].cpu())


def text_tab(gr, run) -> None:
    gr.Markdown("Give the start of a text; the model continues it (temperature 0: the most likely token every "
                "time).")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="prompt", value="The Congress", lines=3, elem_id="prompt")
            length = gr.Slider(1, 1000, value=300, step=1, label="tokens to generate")
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="temperature")
            seed = gr.Number(value=0, precision=0, label="seed")
            go = gr.Button("continue", variant="primary", elem_id="continue")
        text = gr.Textbox(label="text", lines=14, interactive=False, elem_id="continuation")
    def write(prompt_text: str, tokens: float, temp: float, seed_value: float) -> Iterator[str]:
        yield from streamed_text(run, prompt_text, tokens, temp, seed_value)

    go.click(shown(write), [prompt, length, temperature, seed], text, api_name="generate")


def translation_tab(gr, run) -> None:
    gr.Markdown("Give a sentence in the run's source language.")
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(label="sentence", lines=2, value="Y dijo Dios: Sea la luz", elem_id="source")
            beam = gr.Slider(1, 8, value=4, step=1, label="beam width (1: greedy)")
            go = gr.Button("translate", variant="primary", elem_id="translate")
        target = gr.Textbox(label="translation", lines=2, interactive=False, elem_id="translation")
    go.click(shown(lambda sentence, k: run.translate(sentence, int(k))), [source, beam], target, api_name="translate")


def gan_tab(gr, run) -> None:
    from pillars.tasks.generative import sample_grid_of
    job = run.loaded.job
    every = "every class in turn" if job.conditional else "any class (an unconditional GAN)"

    def draw(class_name: str, n: float, seed: float) -> np.ndarray:
        name = "" if class_name == every else class_name
        images = run.sample(int(n), name, int(seed))
        grid = sample_grid_of(job, images, name)
        return (grid.permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy().squeeze())

    gr.Markdown("Images drawn by the generator from seeded noise.")
    with gr.Row():
        with gr.Column():
            choice = gr.Dropdown([every, *(job.classes if job.conditional else [])], value=every, label="class",
                                 interactive=job.conditional, elem_id="gan-class")
            n = gr.Slider(1, 64, value=16, step=1, label="images")
            seed = gr.Number(value=0, precision=0, label="seed")
            go = gr.Button("draw", variant="primary", elem_id="draw")
        grid = gr.Image(label="samples", type="numpy", interactive=False, elem_id="samples")
    go.click(shown(draw), [choice, n, seed], grid, api_name="sample")


# ----------------------------------------------------------------------------- the page

def tabs_by_family() -> list[tuple[type, Callable]]:
    """Which tab each family of runs gets (the first whose family the run's is)."""
    from pillars.tasks.generative import GAN
    from pillars.tasks.images import ImageClassifier
    from pillars.tasks.language import LanguageModel
    from pillars.tasks.speech import SpokenDigitClassifier
    from pillars.tasks.translation import TranslationFamily
    return [(ImageClassifier, image_tab), (SpokenDigitClassifier, speech_tab), (LanguageModel, text_tab),
            (TranslationFamily, translation_tab), (GAN, gan_tab)]


def tab_names(run_dirs: list[Path]) -> list[str]:
    """A tab's name per run: its folder's name, with its parent's where two folders share a name."""
    names = [p.name for p in run_dirs]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in run_dirs]


def page(run_dirs: list[Path], device: str = "cpu"):
    """The demo's page: a gr.Blocks with one tab per run."""
    from pillars import api
    from pillars.data.registry import DataError
    gr = gradio()
    kinds = tabs_by_family()
    with gr.Blocks(title="pillars demo", analytics_enabled=False) as blocks:
        gr.Markdown("# pillars demo\nTrained runs of " + ", ".join(f"`{p}`" for p in run_dirs) + "."
                    if run_dirs else "# pillars demo")
        if not run_dirs:
            gr.Markdown("No runs to show: name run folders (`pillars demo runs/fashion-cnn`), or train one "
                        "(`pillars train fashion-cnn`) into runs/.", elem_id="no-runs")
        with gr.Tabs():
            for run_dir, name in zip(run_dirs, tab_names(run_dirs)):
                with gr.Tab(name, elem_id=f"tab-{name.replace('/', '-')}"):
                    try:
                        run = api.load(run_dir, device)
                    except (ConfigError, DataError) as e:
                        gr.Markdown(f"`{run_dir}` could not be loaded: {e}", elem_classes="not-shown")
                        continue
                    make = next((tab for family, tab in kinds if isinstance(run.task.family, family)), None)
                    gr.Markdown(f"**{run.task.name}** ({run.task.family.what}): {run.task.description}"
                                + (f"; test set: {run.task.family.headline(run.summary)}"
                                   if run.summary and run.summary.get("final") else ""))
                    if make is None:
                        gr.Markdown(f"`{run_dir}` is a run of {run.task.name} ({run.task.family.what}): the demo has "
                                    "no tab for this kind of run. It shows image and spoken-digit classifiers, "
                                    "language models, translation models and GANs; use the command line "
                                    f"(`pillars evaluate {run_dir}`, `pillars explain {run_dir}`).",
                                    elem_classes="not-shown")
                    else:
                        make(gr, run)
    return blocks


def serve(run_dirs: list[Path], host: str = HOST, port: int = PORT, device: str = "cpu",
          max_upload_mb: float = MAX_UPLOAD_MB) -> None:
    """Serve the page until interrupted."""
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir} is not a folder: name run folders (those `pillars train` writes)")
    if not (math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise ConfigError(f"--max-upload must be a positive number of megabytes, not {max_upload_mb}")
    gradio()
    run_dirs = list(dict.fromkeys(run_dirs))   # a run named twice gets one tab
    blocks = page(run_dirs, device).queue(default_concurrency_limit=1)   # one prediction at a time
    try:
        blocks.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False,
                      max_file_size=int(max_upload_mb * 2**20), ssr_mode=False, pwa=False, mcp_server=False,
                      enable_monitoring=False, footer_links=["api"], run_history=False, quiet=False)
    except OSError:   # Gradio's message names its own settings
        raise ConfigError(f"cannot serve on {host}:{port}: the port is in use, or the address is not this "
                          "machine's; choose another --port (or --host)") from None
