"""`pillars export RUN --format onnx`: each exported kind (an image classifier, a character LSTM and GPT, a
GAN's generator) run by ONNX Runtime on real inputs and compared with PyTorch, the README's snippet run as
written, and the runs and files export refuses."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, pillars, sets

ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'dl-pillars[onnx]'")

LM = ["max_steps=4", "context=32", "batch_size=8", "eval_batch_size=64", "eval_batches=1", "ngram=false",
      "precision=32"]
TRAINED = {   # tiny runs of each kind, on their real data
    "fashion-cnn": ["width=4", "hidden=16", "train_samples=512", "max_steps=4", "eval_batches=1",
                    "eval_batch_size=500"],
    "sotu-char-lstm": [*LM, "embed=16", "hidden=16", "layers=1"],
    "sotu-char-gpt": [*LM, "width=16", "heads=2", "layers=1"],
    "mnist-5k-dcgan": ["width=8", "latent=16", "samples=50", "max_steps=3", "eval_batch_size=500",
                       "eval_batches=1", "precision=32"],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (run folder, ONNX file) of each kind, trained and exported once."""
    base = tmp_path_factory.mktemp("export")
    out = {}
    for task, keys in TRAINED.items():
        run = base / task
        pillars("train", task, "--out", str(run), "--no-progress", *sets(*keys))
        printed = pillars("export", str(run), "--format", "onnx").stdout
        assert printed.strip() == f"wrote {run / 'model.onnx'}"
        out[task] = run, run / "model.onnx"
    return out


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_an_image_classifier_gives_the_same_logits_in_onnx_runtime(exported):
    from pillars import runs
    run_dir, onnx = exported["fashion-cnn"]
    run = runs.load(run_dir, "cpu")
    x = run.job.test[0][:37].float()   # real test images, a batch size the export never saw
    with torch.no_grad():
        expected = run.job.model.eval()(x).numpy()
    got = session(onnx).run(["logits"], {"image": x.numpy()})[0]
    assert got.shape == (37, 10)
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("task", ["sotu-char-lstm", "sotu-char-gpt"])
def test_a_language_model_gives_the_same_logits_for_any_batch_and_length(exported, task):
    from pillars import runs
    run_dir, onnx = exported[task]
    run = runs.load(run_dir, "cpu")
    sess = session(onnx)
    ids = torch.from_numpy(run.job.tokenizer.encode(run.job.test_text[:200])).long()
    for batch, length in ((1, 5), (3, 32)):   # 32: the GPT's whole context
        tokens = torch.stack([ids[i * 7:i * 7 + length] for i in range(batch)])
        with torch.no_grad():
            expected = run.job.model.eval()(tokens)[0].numpy()
        got = sess.run(["logits"], {"tokens": tokens.numpy()})[0]
        assert got.shape == (batch, length, len(run.job.tokenizer))
        assert np.abs(got - expected).max() <= 1e-4, (task, batch, length)


def test_a_gan_generator_gives_the_same_images(exported):
    from pillars import runs
    run_dir, onnx = exported["mnist-5k-dcgan"]
    run = runs.load(run_dir, "cpu")
    noise = run.job.model.noise(9, torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ((run.job.model.eval().generator(noise) + 1) / 2).numpy()
    sess = session(onnx)
    assert [i.name for i in sess.get_inputs()] == ["noise"]
    got = sess.run(["image"], {"noise": noise.numpy()})[0]
    assert got.shape == (9, 1, 28, 28) and 0 <= got.min() and got.max() <= 1
    assert np.abs(got - expected).max() <= 1e-4


def test_a_conditional_generator_takes_the_class_as_an_input(tmp_path):
    """A conditional DCGAN's generator (fashion-cdcgan's, initialised as its training starts: a trained one
    needs the GAN metric's classifier first) through the same Graph and export as a run's: noise and class
    ids in, the same images as PyTorch's for every class."""
    from pillars.export import Graph, export
    from pillars.models.gan import GAN, GANConfig
    from pillars.tasks.generative import Pixels
    torch.manual_seed(0)
    model = GAN(GANConfig(latent=16, width=8, num_classes=10)).eval()
    example = {"noise": model.noise(2, torch.Generator().manual_seed(0)), "label": torch.arange(2)}
    export(Graph(Pixels(model.generator), example, {name: {0: "batch"} for name in example}, ["image"]),
           tmp_path / "cgan.onnx")
    noise, label = model.noise(10, torch.Generator().manual_seed(5)), torch.arange(10)
    with torch.no_grad():
        expected = Pixels(model.generator)(noise, label).numpy()
    sess = session(tmp_path / "cgan.onnx")
    assert [i.name for i in sess.get_inputs()] == ["noise", "label"]
    got = sess.run(["image"], {"noise": noise.numpy(), "label": label.numpy()})[0]
    assert got.shape == (10, 1, 28, 28) and np.abs(got - expected).max() <= 1e-4


def readme_snippet() -> str:
    """The README's ONNX Runtime snippet: the python block after the line that introduces it."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"classifies an image with ONNX Runtime.*?```python\n(.*?)```", text, re.S)
    if found is None:
        pytest.fail("README.md has no ONNX Runtime snippet (a python block after 'classifies an image with ONNX "
                    "Runtime')")
    return found.group(1)


def test_the_readme_snippet_classifies_an_image_without_torch(exported, tmp_path):
    """The snippet, as written, in a fresh interpreter where importing torch fails: it reads the run's
    inputs.json and model.onnx and classifies a Fashion-MNIST test image as the run does."""
    from PIL import Image

    from pillars import api, data
    run_dir, _ = exported["fashion-cnn"]
    pixels = data.load("fashion-mnist")["test_x"][0]
    Image.fromarray(pixels).save(tmp_path / "image.png")
    (tmp_path / "run").symlink_to(run_dir)
    (tmp_path / "torch.py").write_text("raise ImportError('torch is not installed here')\n")
    script = tmp_path / "snippet.py"
    script.write_text(readme_snippet().replace("runs/fashion-cnn", "run").replace("shoe.png", "image.png"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    expected = api.load(run_dir).predict(pixels)
    assert result.stdout.splitlines()[0].startswith(next(iter(expected)) + "  ")


def test_export_refuses_other_runs_and_the_runs_own_files(exported, tmp_path):
    run_dir, _ = exported["fashion-cnn"]
    r = pillars("export", str(run_dir), "--out", str(run_dir / "model.safetensors"), check=False)
    assert r.returncode == 2 and "is a file of the run" in r.stderr
    r = pillars("export", str(run_dir), "--format", "tflite", check=False)
    assert r.returncode == 2 and "invalid choice: 'tflite'" in r.stderr
    theirs = tmp_path / "notes.onnx"
    theirs.write_text("the user's own file")
    for out, words in ((theirs, "already exists: export never replaces a file"),
                       (tmp_path / "model.txt", "does not end in .onnx")):
        r = pillars("export", str(run_dir), "--out", str(out), check=False)
        assert r.returncode == 2 and words in r.stderr, r.stderr
    assert theirs.read_text() == "the user's own file" and not (tmp_path / "model.txt").exists()
    r = pillars("export", str(tmp_path / "nothing"), check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr
    before = sorted(p.name for p in tmp_path.iterdir())
    adding = tmp_path / "adding"
    pillars("train", "adding-problem", "--out", str(adding), "--no-progress",
            *sets("max_steps=2", "eval_batches=1", "hidden=8", "test_sequences=100"))
    r = pillars("export", str(adding), "--out", str(tmp_path / "x.onnx"), check=False)
    assert r.returncode == 2 and "export takes runs of image classifiers, language models and GANs" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "adding"])   # nothing half-written
