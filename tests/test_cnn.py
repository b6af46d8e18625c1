import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pillars import data
from pillars.data import transforms
from pillars.data.folder import load_image_folder
from pillars.config import ConfigError
from pillars.data.registry import DataError
from pillars.models import cnn
from tests.conftest import TINY, pillars, sets


def top_class(predict_output: str) -> str:
    """The first class line of `pillars predict` (lines under the file name: class, probability)."""
    return next(ln.split()[0] for ln in predict_output.splitlines() if ln.startswith("  "))


def _trains(model, x, classes):
    logits = model(x)
    assert logits.shape == (x.shape[0], classes)
    F.cross_entropy(logits, torch.arange(x.shape[0]) % classes).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_lenet5_shapes_and_gradients():
    model = cnn.LeNet5(cnn.LeNetConfig())
    _trains(model, torch.randn(4, 1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 61706   # the paper's layer sizes, 28x28 padded to 32


def test_resnet_shapes_gradients_and_identity_start():
    model = cnn.ResNet(cnn.ResNetConfig(widths=(8, 16, 32), blocks=2))
    _trains(model, torch.randn(4, 1, 28, 28), 10)
    block = cnn.ResNet(cnn.ResNetConfig(widths=(8,), blocks=1)).stages[0][0].eval()
    x = torch.rand(2, 8, 6, 6)
    torch.testing.assert_close(block(x), F.relu(x))   # zero-initialised last BN: the block starts as identity


def test_resnet_stem_pool_quarters_the_pixels():
    model = cnn.ResNet(cnn.ResNetConfig(widths=(8, 16), blocks=1, stem_pool=True))
    _trains(model, torch.randn(4, 1, 28, 28), 10)
    assert model.stem(torch.randn(2, 1, 28, 28)).shape == (2, 8, 14, 14)
    assert model.stages(model.stem(torch.randn(2, 1, 28, 28))).shape == (2, 16, 7, 7)


def test_efficientnet_lite0_equals_the_reference_on_real_photos():
    """Our EfficientNet-Lite0 with the ImageNet weights gives the reference implementation's logits."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from sklearn.datasets import load_sample_images
    from pillars.data.weights import efficientnet_lite0_imagenet
    path = data.fetch("efficientnet-lite0-imagenet")["efficientnet-lite0-57934424.pth"]
    reference = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    ours = cnn.EfficientNetLite().eval()
    ours.load_state_dict(cnn.efficientnet_from_reference(efficientnet_lite0_imagenet()))
    photos = [np.asarray(Image.fromarray(im).resize((224, 224), Image.Resampling.BICUBIC))
              for im in load_sample_images().images]                       # china.jpg, flower.jpg
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert (expected - got).abs().max().item() <= 1e-4
    assert 698 in got[0].topk(5).indices.tolist()   # china.jpg shows a temple: ImageNet 698 is "palace"


def test_random_crop_shifts_and_flip_mirrors():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    torch.manual_seed(0)
    out = transforms.random_crop(x, 2)
    assert out.shape == x.shape
    for i in range(2):   # each output is a window of the zero-padded input
        padded = F.pad(x[i], (2, 2, 2, 2))
        windows = [padded[:, dy:dy + 5, dx:dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = transforms.random_flip(x)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    assert torch.equal(transforms.shift(x, 1)[..., 1:], x[..., :-1])


def test_random_erase_replaces_one_rectangle_of_the_drawn_size():
    torch.manual_seed(0)
    x = torch.full((500, 1, 28, 28), 7.0)
    assert torch.equal(transforms.random_erase(x, 0.0), x)
    out = transforms.random_erase(x, 1.0)
    changed = out != 7.0
    fractions = changed.float().mean((1, 2, 3))
    assert fractions.min() > 0.005 and fractions.max() < 0.45   # area 2-40%, clipped rectangles smaller
    assert 0.15 < fractions.mean() < 0.25                        # mean area ~0.21 before clipping
    for m in changed[:50, 0]:   # the erased pixels form one axis-aligned rectangle
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert m.sum() == len(rows) * len(cols) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    half = transforms.random_erase(x, 0.5)
    assert 0.4 < (half != 7.0).flatten(1).any(1).float().mean() < 0.6


@pytest.fixture
def folder(tmp_path, fashion):
    """A user's folder: three Fashion-MNIST classes as PNG and JPEG files of several sizes and modes."""
    root = tmp_path / "photos"
    names = {0: "tshirt", 1: "trouser", 7: "sneaker"}
    for label, name in names.items():
        (root / name).mkdir(parents=True)
        idx = np.flatnonzero(fashion["train_y"] == label)[:40]
        for k, i in enumerate(idx):
            im = Image.fromarray(fashion["train_x"][i]).resize((40 + k, 40 + k))
            if k % 3 == 0:
                im.convert("RGB").save(root / name / f"{k}.jpg", quality=95)
            elif k % 3 == 1:
                im.convert("RGBA").save(root / name / f"{k}.png")
            else:
                im.save(root / name / f"{k}.png")
    (root / "tshirt" / "notes.txt").write_text("not an image, ignored by extension")
    return root


def test_image_folder_loads_any_size_and_mode(folder):
    arrays, classes = load_image_folder(folder, size=32)
    assert classes == ["sneaker", "trouser", "tshirt"]
    assert arrays["train_x"].shape[1:] == (32, 32)   # all grey: one channel
    assert len(arrays["train_x"]) + len(arrays["test_x"]) == 120 and len(arrays["test_x"]) == 24


def image_folder_job(root, *settings):
    from pillars import tasks, train
    cfg = train.resolve_config("image-folder", overrides=dict(s.split("=") for s in (f"data={root}", "image_size=28",
                                                                                      "device=cpu", *settings)))
    return tasks.get("image-folder").make_job(cfg, torch.device("cpu"))


def test_image_folder_holds_validation_images_out_of_its_training_images(folder, tmp_path):
    """One folder: train, validation and test, each stratified, the test split as before; train/ and test/
    folders: the validation images come from train/ and the test images are test/ itself."""
    job = image_folder_job(folder)
    (train_x, _), (valid_x, valid_y), (test_x, test_y) = job.train.tensors, job.valid, job.test
    assert (len(train_x), len(valid_x), len(test_x)) == (87, 9, 24)
    assert np.bincount(valid_y.numpy()).tolist() == [3, 3, 3] and np.bincount(test_y.numpy()).tolist() == [8, 8, 8]
    arrays, _ = load_image_folder(folder, size=28)
    assert torch.equal(test_y, torch.from_numpy(arrays["test_y"]))
    seen = {x.numpy().tobytes() for x in train_x}
    assert not any(x.numpy().tobytes() in seen for x in valid_x)
    split = tmp_path / "split"
    for c in ("sneaker", "trouser", "tshirt"):
        files = sorted((folder / c).glob("*.*"))
        for part, chosen in (("train", files[:30]), ("test", files[30:])):
            (split / part / c).mkdir(parents=True)
            for f in chosen:
                (split / part / c / f.name).write_bytes(f.read_bytes())
    job = image_folder_job(split)
    assert (len(job.train.tensors[0]), len(job.valid[0]), len(job.test[0])) == (81, 9, 30)
    with pytest.raises(ConfigError, match="leaves 90 to train on and 0 to validate on"):
        image_folder_job(split, "valid_fraction=0.01")


def test_image_folder_task_learns(folder, tmp_path):
    run = tmp_path / "run"
    pillars("train", "image-folder", "--out", str(run), "--no-progress",
            *sets(f"data={folder}", "image_size=28", "width=8", "epochs=60", "precision=32"))
    import json
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["accuracy"] >= 0.8 and "accuracy" in summary["valid"], summary
    moved = folder.rename(folder.with_name("moved"))   # predict reads the run's inputs.json, not the folder
    r = pillars("predict", str(run), str(moved / "sneaker" / "0.jpg"), "--top-k", "2")
    assert top_class(r.stdout) == "sneaker"


def test_image_folder_errors_are_clear(tmp_path, folder):
    r = pillars("train", "image-folder", "--dry-run", check=False)
    assert r.returncode == 2 and "--set data=DIR" in r.stderr
    r = pillars("train", "image-folder", "--dry-run", *sets(f"data={tmp_path / 'nowhere'}"), check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr
    (folder / "trouser" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        load_image_folder(folder, size=28)


def test_predict_rejects_corrupt_and_non_image_files(tmp_path, fashion):
    run = tmp_path / "run"
    pillars("train", "fashion-cnn", "--out", str(run), "--no-progress", *sets(*TINY, "max_steps=2"))
    bad = tmp_path / "shoe.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (bad, text):
        r = pillars("predict", str(run), str(path), check=False)
        assert r.returncode == 2 and f"{path} is not a readable image" in r.stderr.replace("\n", "")


def test_predict_inverts_a_photo_on_a_light_background(tmp_path, fashion):
    """A test-set trouser drawn dark on white (as a product photo is) is inverted and recognised."""
    run = tmp_path / "run"
    pillars("train", "fashion-cnn", "--out", str(run), "--no-progress",
            *sets("width=16", "train_samples=20000", "epochs=1", "precision=32"))
    i = int(np.flatnonzero(fashion["test_y"] == 1)[0])
    photo = tmp_path / "trouser.png"
    Image.fromarray(255 - fashion["test_x"][i]).resize((300, 300)).convert("RGB").save(photo)
    r = pillars("predict", str(run), str(photo), "--top-k", "1")
    assert "inverted" in r.stdout and top_class(r.stdout) == "trouser"


def test_a_photo_is_converted_as_fashion_mnist_was_made(fashion):
    """A test image drawn dark on light grey, small and off-centre in a large photo, comes back as itself:
    trimmed to the object, longest edge 28, centred, negated, background black."""
    from pillars.data.folder import as_fashion_mnist
    i = int(np.flatnonzero(fashion["test_y"] == 9)[0])      # an ankle boot: touches the frame's left and right
    original = fashion["test_x"][i]
    rows, cols = np.flatnonzero(original.max(1) > 0), np.flatnonzero(original.max(0) > 0)
    item = original[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    big = Image.fromarray(255 - item).resize((item.shape[1] * 10, item.shape[0] * 10), Image.Resampling.LANCZOS)
    photo = Image.new("L", (900, 700), 255)
    photo.paste(big, (500, 60))
    photo = Image.fromarray((np.asarray(photo) * 0.9).astype(np.uint8)).convert("RGB")   # light grey, not white
    pixels, negated = as_fashion_mnist(photo, 28)
    assert negated and pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[0, 0] == pixels[-1, -1] == 0                               # the background is black again
    assert np.corrcoef(pixels.ravel().astype(float), original.ravel().astype(float))[0, 1] > 0.9
    dark, negated = as_fashion_mnist(Image.fromarray(original).convert("RGB"), 28)
    assert not negated and np.corrcoef(dark.ravel().astype(float), original.ravel().astype(float))[0, 1] > 0.9


def test_product_photos_export_real_shoe_photos(tmp_path):
    """The real photos for `pillars predict` come from their npm package, checksummed, as JPEG files."""
    from pillars.data.folder import as_fashion_mnist, open_image
    from pillars.data.vision import PRODUCT_PHOTOS
    r = pillars("data", "export", "product-photos", str(tmp_path / "photos"))
    assert "RunX Running Shoe" in r.stdout.replace("\n", " ")
    files = sorted(p.name for p in (tmp_path / "photos").iterdir())
    assert files == sorted(PRODUCT_PHOTOS)
    photo = open_image(tmp_path / "photos" / "nikolai-chernichenko-1299748-unsplash.jpg")
    assert photo.size == (1600, 1067)
    pixels, negated = as_fashion_mnist(photo, 28)
    assert negated and pixels[[0, -1]].mean() < 3 and pixels.max() > 200   # a dark shoe on grey: light on black
    (tmp_path / "file").write_text("x")
    r = pillars("data", "export", "product-photos", str(tmp_path / "file"), check=False)
    assert r.returncode == 2 and "give a folder" in r.stderr
    pillars("data", "export", "product-photos", str(tmp_path / "photos"))   # again: the same files stay
    theirs = tmp_path / "photos" / "nikolai-chernichenko-1299748-unsplash.jpg"
    theirs.write_bytes(b"the user's own picture")
    r = pillars("data", "export", "product-photos", str(tmp_path / "photos"), check=False)
    assert r.returncode == 2 and "already holds other files named nikolai-chernichenko" in r.stderr
    assert theirs.read_bytes() == b"the user's own picture"


@pytest.mark.parametrize("task", ["fashion-resnet", "mnist-5k-cnn", "digits-cnn", "fashion-transfer"])
def test_every_image_task_runs_one_step(task, fashion):
    # fashion-resnet in fp32: its default bf16 is ten times slower on a CPU without bf16 units (the GAN
    # tests train in bf16)
    r = pillars("train", task, "--dry-run", *(sets("erase=0.5", "precision=32") if task == "fashion-resnet" else []))
    assert "dry run ok" in r.stderr
    if task == "fashion-resnet":
        r = pillars("train", task, "--dry-run", *sets("erase=1.5"), check=False)
        assert r.returncode == 2 and "erase must be between 0 and 1, not 1.5" in r.stderr
    if task == "digits-cnn":
        r = pillars("train", task, "--dry-run", *sets("valid_fraction=1"), check=False)
        assert r.returncode == 2 and "valid_fraction must be between 0 and 1 (exclusive), not 1" in r.stderr


def test_the_validation_split_is_stratified_fixed_and_apart_from_training_and_test():
    """digits-cnn holds out 10% of every class of the training images, the same for every run seed; the
    normalisation comes from the rest; the test set is the dataset's own, as before."""
    from pillars import tasks, train
    from pillars.tasks.images import held_out, normalised, scaled_pixels
    arrays = data.load("digits")
    jobs = [tasks.get("digits-cnn").make_job(train.resolve_config("digits-cnn", overrides={"seed": seed}),
                                             torch.device("cpu")) for seed in (0, 1)]
    tr, va = held_out(arrays["train_y"], 0.1)
    assert len(va) == 143 and not set(tr) & set(va) and len(tr) + len(va) == len(arrays["train_y"])
    counts, valid_counts = np.bincount(arrays["train_y"]), np.bincount(arrays["train_y"][va])
    assert (np.abs(valid_counts - 0.1 * counts) <= 0.5).all()          # stratified: 10% of every class
    inputs = jobs[0].inputs
    assert inputs.mean[0] == pytest.approx(scaled_pixels(arrays["train_x"][tr]).mean().item(), abs=1e-6)
    assert inputs.mean[0] != pytest.approx(scaled_pixels(arrays["train_x"]).mean().item(), abs=1e-6)

    def prepared(x):
        return normalised(scaled_pixels(x), inputs.mean, inputs.std)
    for job in jobs:                                                    # the same split whatever the seed
        torch.testing.assert_close(job.valid[0], prepared(arrays["train_x"][va]))
        assert torch.equal(job.valid[1], torch.from_numpy(arrays["train_y"][va]))
        torch.testing.assert_close(job.train.tensors[0], prepared(arrays["train_x"][tr]))
        torch.testing.assert_close(job.test[0], prepared(arrays["test_x"]))
        assert torch.equal(job.test[1], torch.from_numpy(arrays["test_y"]))


def test_the_image_family_explains_predicts_and_states_its_figures(tmp_path):
    """`pillars explain` and `pillars predict` on an image run go through its family; the headline, the
    baselines on the same test set (a logistic regression on the pixels, the majority class) and the chance
    level come from the run's summary, or from its number of classes."""
    import json
    from pillars import tasks
    run = tmp_path / "run"
    pillars("train", "digits-cnn", "--out", str(run), "--no-progress", "--max-steps", "60")
    summary = json.loads((run / "summary.json").read_text())
    family = tasks.get("digits-cnn").family
    assert family.headline(summary) == f"{100 * summary['final']['accuracy']:.2f}% accuracy"
    digits = data.load("digits")
    shares = np.bincount(digits["test_y"]) / len(digits["test_y"])     # the training set's commonest class
    majority = summary["baselines"]["majority_accuracy"]                 # scored on the test images
    assert any(majority == pytest.approx(share) for share in shares)
    assert 0.9 < summary["baselines"]["logistic_accuracy"] < 1        # 8x8 digits: a linear model does well
    assert family.chance(summary) == f"majority class {majority:.2%}"
    assert family.baselines_text(summary, "baselines").startswith("logistic regression on the pixels 9")
    no_baselines = {**summary, "baselines": {}}
    assert family.chance(no_baselines) == "10% (10 classes)"
    assert tasks.get("image-folder").family.chance(no_baselines) == ""   # its classes depend on the folder
    out = pillars("explain", str(run)).stdout
    assert f"confusion.png (accuracy {summary['final']['accuracy']:.2%} on the test set)" in out   # the whole set
    assert "accuracy at shifts [0, 1, 2, 3, 4, 5, 6, 7, 8] px" in out and "\n  CNN  " in out
    photo = tmp_path / "digit.png"
    Image.fromarray(digits["test_x"][0]).resize((64, 64)).save(photo)
    out = pillars("predict", str(run), str(photo), "--top-k", "3").stdout
    assert len([ln for ln in out.splitlines() if ln.startswith("  ")]) == 3
    r = pillars("sample", str(run), check=False)
    assert r.returncode == 2 and "(image classifier): sample takes runs of" in r.stderr


def test_explain_writes_its_figures_and_the_cnn_shrugs_off_shifts(tmp_path, fashion):
    from pillars import explain, runs
    run = tmp_path / "run"   # fp32 on 20,000 images: bf16 is ten times slower on a CPU without bf16 units
    pillars("train", "fashion-resnet", "--out", str(run), "--no-progress",
            *sets("width=16", "blocks=1", "epochs=1", "warmup_steps=50", "train_samples=20000", "batch_size=32",
                  "precision=32"))
    job = runs.load(run, "cpu").job
    result = explain.explain_image_classifier(run, job, log=lambda s: None, shifts=(0, 4), mlp_epochs=1)
    for name in ("filters", "feature_maps", "confusion", "gradcam", "translation"):
        with Image.open(run / f"{name}.png") as im:
            im.verify()
    cnn_acc, mlp_acc = result["translation"]["CNN"], result["translation"]["MLP"]
    assert cnn_acc[0] > 0.75 and mlp_acc[0] > 0.7         # both learned the unshifted images
    assert cnn_acc[1] - mlp_acc[1] > 0.2                   # a 4-pixel shift hurts the MLP far more


def test_the_pixel_baseline_is_skipped_for_large_images_and_scores_the_test_images():
    """The logistic regression reads the training images and is scored on the test images; images of more
    than PIXEL_BASELINE_FEATURES values, or training images of one class, get the majority class only."""
    from pillars.tasks.images import PIXEL_BASELINE_FEATURES, image_baselines
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.randn(40, 1, 4, 4, generator=g) + 3 * y[:, None, None, None]   # separable by brightness
    test_y = torch.tensor([1, 1, 1, 0])
    test_x = torch.randn(4, 1, 4, 4, generator=g) + 3 * test_y[:, None, None, None]
    assert image_baselines((x, y), (test_x, test_y)) == {"majority_accuracy": 0.25, "logistic_accuracy": 1.0}
    side = int(PIXEL_BASELINE_FEATURES ** 0.5) + 1
    big = image_baselines((torch.zeros(4, 1, side, side), y[:4]), (torch.zeros(4, 1, side, side), test_y))
    assert big == {"majority_accuracy": 0.25}
    one_class = image_baselines((x[y == 1], y[y == 1]), (test_x, test_y))   # e.g. a folder cut by train_samples
    assert one_class == {"majority_accuracy": 0.75}
