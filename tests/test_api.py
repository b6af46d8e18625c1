"""The Python API (pillars.load, pillars.fit) and the example notebook, executed as a reader runs it."""
import os
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, pillars


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny runs trained through the API: an image classifier, a character LSTM, a GAN."""
    import pillars as api
    base = tmp_path_factory.mktemp("api")
    cnn = api.fit("fashion-cnn", out=base / "cnn", width=4, hidden=16, train_samples=512, max_steps=4,
                    eval_batches=1, eval_batch_size=500)
    lm = api.fit("sotu-char-lstm", out=base / "lm", embed=16, hidden=16, layers=1, max_steps=4, context=32,
                   batch_size=8, eval_batch_size=64, eval_batches=1, ngram=False, precision="32")
    gan = api.fit("mnist-5k-dcgan", out=base / "gan", width=8, latent=16, samples=50, max_steps=3,
                    eval_batch_size=500, eval_batches=1, precision="32")
    return {"cnn": cnn, "lm": lm, "gan": gan}


def test_import_is_cheap_and_fit_returns_the_summary(trained):
    import subprocess
    code = "import sys, pillars; assert 'torch' not in sys.modules; assert callable(pillars.load) and callable(pillars.fit)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    summary = trained["cnn"]
    assert summary["status"] == "finished" and 0 < summary["final"]["accuracy"] <= 1
    assert os.path.isfile(os.path.join(summary["run_dir"], "model.safetensors"))


def test_predict_returns_what_pillars_predict_prints(trained, fashion, tmp_path):
    from PIL import Image

    import pillars as api
    run = api.load(trained["cnn"]["run_dir"])
    assert not run.model.training and run.task.name == "fashion-cnn" and run.config["width"] == 4
    assert run.summary["final"] == trained["cnn"]["final"]
    shirt = np.full((80, 60, 3), 230, np.uint8)   # a photo: a dark object on a light background
    shirt[10:70, 15:45] = 40
    Image.fromarray(shirt).save(tmp_path / "photo.png")
    probs = run.predict(tmp_path / "photo.png")
    assert list(probs.values()) == sorted(probs.values(), reverse=True) and abs(sum(probs.values()) - 1) < 1e-5
    assert run.predict(shirt) == probs == run.predict(Image.fromarray(shirt))   # the same photo as pixels
    printed = pillars("predict", trained["cnn"]["run_dir"], str(tmp_path / "photo.png"), "--top-k", "2").stdout
    top = list(probs.items())[:2]
    assert printed.splitlines() == [f"{tmp_path / 'photo.png'}  (inverted: light background)",
                                    *(f"  {c:<16} {p:6.1%}" for c, p in top)]
    # a test image of the model's side is read as it is, as the run evaluates it
    x = torch.from_numpy(fashion["test_x"][:1]).float().div(255)[:, None]
    mean, std = run.loaded.job.inputs.mean[0], run.loaded.job.inputs.std[0]
    with torch.no_grad():
        expected = run.model((x - mean) / std).softmax(-1)[0]
    got = run.predict(fashion["test_x"][0])
    classes = run.loaded.job.inputs.classes
    assert max(abs(got[c] - float(expected[i])) for i, c in enumerate(classes)) < 1e-6
    from pillars.config import ConfigError
    with pytest.raises(ConfigError, match="must be uint8"):
        run.predict(fashion["test_x"][0] / 255.0)
    with pytest.raises(ConfigError, match="generate takes runs of language models"):
        run.generate("The Congress")


def test_generate_and_sample_return_text_and_images(trained):
    import pillars as api
    from pillars.config import ConfigError
    lm = api.load(trained["lm"]["run_dir"])
    text = lm.generate("The Congress", length=20, seed=1)
    assert isinstance(text, str) and text.startswith("The Congress") and len(text) == len("The Congress") + 20
    assert lm.generate("The Congress", length=20, seed=1) == text   # seeded
    assert len(lm.generate("The", length=5, n=3)) == 3
    with pytest.raises(ConfigError, match="not a classifier"):
        lm.predict(np.zeros((28, 28), np.uint8))
    gan = api.load(trained["gan"]["run_dir"])
    images = gan.sample(6, seed=2)
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(gan.sample(6, seed=2), images)
    with pytest.raises(ConfigError, match="unconditional"):
        gan.sample(4, class_name="3")
    with pytest.raises(ConfigError, match="translate takes runs of bible-translate"):
        gan.translate("Y dijo Dios")


def test_the_example_notebook_runs_and_shows_its_results(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    env_before = os.environ.get("PILLARS_NOTEBOOK_RUNS")
    os.environ["PILLARS_NOTEBOOK_RUNS"] = str(tmp_path)   # the kernel inherits it: the run goes here
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    finally:
        if env_before is None:
            del os.environ["PILLARS_NOTEBOOK_RUNS"]
        else:
            os.environ["PILLARS_NOTEBOOK_RUNS"] = env_before
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    accuracy = float(printed.split("test accuracy ")[1].split("%")[0])
    assert 60 < accuracy <= 100, printed   # 60 steps of a small CNN: well above the 10% of chance
    right = int(printed.split(" of 8 test images right")[0].split()[-1])
    assert right >= 5, printed
    assert (tmp_path / "fashion-cnn" / "model.safetensors").is_file()
    figures = [o for o in code[-1].outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(figures) == 1
