"""brain-segment: the U-Net's shapes and gradients, Colin27 and its label sets from the packaged data, slabs
that keep their gaps, Dice from additive sums, the nearest-slice baseline; a user's NIfTI and PNG pairs
train, explain and predict, and their mistakes are named."""
import numpy as np
import pytest
import torch

from pillars import data, train
from pillars.config import ConfigError
from pillars.data.mri import AAL_LOBES, slab_roles
from pillars.data.registry import DataError
from pillars.models.cnn import UNet, UNetConfig
from pillars.tasks import segmentation
from tests.conftest import pillars, sets


def test_the_unet_keeps_the_side_and_every_weight_gets_a_gradient():
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, num_classes=3, width=4, depth=3))
    x = torch.randn(2, 1, 32, 48)
    out = model(x)
    assert out.shape == (2, 3, 32, 48)
    torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 32, 48))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.up[0].out_channels == 16 and model.head.in_channels == 4   # 4, 8, 16, 32: halved on the way up
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 1, 30, 48))


def test_the_skip_connections_carry_fine_detail_the_bottom_cannot():
    """A pixel's own value reaches its logits through the first level's skip: changing one pixel changes
    the output most at (or beside) that pixel, not over a coarse level's whole cell."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, num_classes=2, width=4, depth=2, batch_norm=False)).eval()
    x = torch.zeros(1, 1, 16, 16)
    bumped = x.clone()
    bumped[0, 0, 5, 9] = 5.0
    change = (model(bumped) - model(x)).abs().sum(1)[0]
    row, col = divmod(change.argmax().item(), 16)
    assert abs(row - 5) <= 1 and abs(col - 9) <= 1, (row, col)


def test_colin27_and_its_two_label_sets_come_from_the_package():
    arrays = data.load("colin27")
    assert {k: v.shape for k, v in arrays.items()} == {k: (181, 217, 181) for k in ("t1", "mask", "lobes")}
    assert set(np.unique(arrays["mask"])) == {0, 1} and arrays["mask"].sum() == 1_737_193
    counts = np.bincount(arrays["lobes"].ravel(), minlength=9)
    assert counts.tolist()[1:] == [435706, 29153, 96746, 210346, 246947, 53647, 212593, 194831]
    names = data.get("colin27").meta["label sets"]["lobes"]
    assert names == ["background", *AAL_LOBES] and names[2] == "insula"
    # slice 80 (z = 9 mm): the T1 is brightest inside the head, the mask sits inside the head, the front on top
    head = arrays["t1"][80] > 40
    assert np.all(head[arrays["mask"][80] == 1].mean() > 0.9)
    rows = np.flatnonzero(arrays["lobes"][80] == 1)   # frontal: in the top half of an axial slice
    assert np.median(rows // 181) < 217 / 2


def test_slabs_keep_their_gaps_and_cover_the_volume():
    roles = slab_roles(181, 6, 4, 60)
    assert {r: int((roles == r).sum()) for r in ("train", "valid", "test", "gap")} == \
        {"train": 97, "valid": 18, "test": 18, "gap": 48}
    held = np.flatnonzero(np.isin(roles, ["valid", "test"]))
    trained = np.flatnonzero(roles == "train")
    assert np.abs(held[:, None] - trained[None]).min() == 5   # 4 slices of gap: the nearest is 5 away


def test_dice_is_the_same_from_sums_of_batches_as_from_the_whole_set():
    inputs = segmentation.SegmentationInputs(["background", "a", "b"], [0, 1, 2], 8)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (6, 8, 8), generator=g)
    labels[:, 0] = segmentation.PAD
    pred = torch.where(torch.rand(6, 8, 8, generator=g) < 0.7, labels.clamp(min=0), torch.randint(0, 3, (6, 8, 8)))
    whole = segmentation.dice_sums(pred, labels, 3)
    halves = [segmentation.dice_sums(pred[s], labels[s], 3) for s in (slice(0, 2), slice(2, 6))]
    added = {k: (halves[0][k] + halves[1][k]).numpy() for k in whole}
    figures = segmentation.dice_summary(added, inputs)
    real = labels != segmentation.PAD
    for c, name in ((1, "a"), (2, "b")):
        p, t = (pred == c) & real, labels == c
        assert figures[f"dice_{name}"] == pytest.approx(2 * (p & t).sum().item() / (p.sum() + t.sum()).item())
    assert figures["mean_dice"] == pytest.approx((figures["dice_a"] + figures["dice_b"]) / 2)
    assert segmentation.dice_summary({k: v.numpy() for k, v in segmentation.dice_sums(
        labels.clamp(min=0), labels, 3).items()}, inputs)["mean_dice"] == 1.0


@pytest.mark.parametrize("labels,classes,baseline", [("mask", 2, 0.9096), ("lobes", 9, 0.7285)])
def test_the_packaged_job_and_its_nearest_slice_baseline(labels, classes, baseline):
    cfg = train.resolve_config("brain-segment", overrides={"labels": labels})
    job = segmentation.build_brain_segment(cfg, torch.device("cpu"))
    assert job.test[0].shape == (18, 2, 224, 192) and job.valid[0].shape == (18, 2, 224, 192)   # image, height
    assert job.train.n == 97 and len(job.inputs.classes) == classes
    assert job.model(job.test[0][:1]).shape == (1, classes, 224, 192)
    assert {z for _, z in job.where["test"]} & {z for _, z in job.where["train"]} == set()
    figures = job.baselines()
    assert figures["nearest_slice_mean_dice"] == pytest.approx(baseline, abs=1e-3)


def test_the_options_are_checked_before_any_data_is_read():
    for overrides, message in (({"labels": "aal"}, "labels must be one of mask, lobes"),
                               ({"period": 20}, "cannot hold a test and a validation slab"),
                               ({"data": "/x", "labels": "lobes"}, "leave labels out")):
        with pytest.raises(ConfigError, match=message):
            train.resolve_config("brain-segment", overrides=overrides)


# ----------------------------------------------------------------------------- a user's pairs

def disc_images(n: int, side: int = 24, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bright discs on a noisy dark background, and their masks (0 and 255)."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[:side, :side]
    for _ in range(n):
        cy, cx, r = rng.integers(7, side - 7, 2).tolist() + [rng.integers(3, 6)]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
        image = np.clip(40 + 160 * mask + rng.normal(0, 15, mask.shape), 0, 255).astype(np.uint8)
        out.append((image, (mask * 255).astype(np.uint8)))
    return out


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    from PIL import Image
    folder = tmp_path_factory.mktemp("pngs")
    for k, (image, mask) in enumerate(disc_images(20)):
        Image.fromarray(image).save(folder / f"c{k:02d}_image.png")
        Image.fromarray(mask).save(folder / f"c{k:02d}_mask.png")
    out = tmp_path_factory.mktemp("png-run")
    cfg = train.resolve_config("brain-segment", overrides={"data": str(folder), "width": 4, "depth": 2,
                                                           "batch_size": 4, "max_steps": 60, "lr": 1e-2})
    return folder, out, train.fit("brain-segment", cfg, out, progress=False)


def test_png_pairs_train_beyond_their_nearest_image_baseline(png_run):
    _, _, summary = png_run
    f = summary["final"]
    assert set(f) >= {"dice_255", "mean_dice", "loss"} and f["mean_dice"] > 0.8, f
    assert "nearest_slice_mean_dice" in summary["baselines"]


def test_explain_draws_overlays_and_predict_writes_masks(png_run):
    from PIL import Image
    folder, run_dir, _ = png_run
    r = pillars("explain", str(run_dir))
    assert (run_dir / "segmentation.png").stat().st_size > 0 and "held-out test slices" in r.stdout + r.stderr
    pillars("predict", str(run_dir), str(folder / "c00_image.png"))
    mask = np.asarray(Image.open(run_dir / "predictions" / "c00_image_mask.png"))
    truth = np.asarray(Image.open(folder / "c00_mask.png"))
    assert set(np.unique(mask)) <= {0, 255} and (mask == truth).mean() > 0.9
    refused = pillars("predict", str(run_dir), str(folder / "c00_image.png"), "--top-k", "2", check=False)
    assert refused.returncode != 0 and "leave --top-k out" in refused.stderr


def test_a_nifti_volume_trains_in_slabs(tmp_path):
    import nibabel as nib
    rng = np.random.default_rng(0)
    z = np.arange(40)[None, None, :]
    yy, xx = np.mgrid[:16, :16]
    ball = ((yy - 8) ** 2 + (xx - 8) ** 2)[..., None] <= (3 + 3 * np.sin(z / 6.0) ** 2) ** 2
    labels = ball.astype(np.int16) * 3
    image = (ball * 100 + rng.normal(0, 10, ball.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "s1_image.nii.gz"))
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(tmp_path / "s1_label.nii.gz"))
    cfg = train.resolve_config("brain-segment", overrides={"data": str(tmp_path), "width": 4, "depth": 2,
                                                           "slab": 3, "gap": 2, "period": 20, "batch_size": 4,
                                                           "max_steps": 2})
    job = segmentation.build_brain_segment(cfg, torch.device("cpu"))
    assert job.inputs.classes == ["0", "3"] and job.test[0].shape == (6, 2, 16, 16)
    assert [z for _, z in job.where["test"]] == [4, 5, 6, 24, 25, 26]
    assert job.baselines()["nearest_slice_mean_dice"] > 0.5
    written = segmentation.write_prediction(job.model.eval(), job.inputs, tmp_path / "s1_image.nii.gz", tmp_path,
                                            torch.device("cpu"))
    assert written.name == "s1_image_label.nii.gz"
    predicted = np.asarray(nib.load(str(written)).dataobj)
    assert predicted.shape == (16, 16, 40) and set(np.unique(predicted)) <= {0, 3}
    assert np.allclose(nib.load(str(written)).affine, np.eye(4)) and not list(tmp_path.glob(".*tmp*"))
    tall = segmentation.build_brain_segment({**cfg, "height": True}, torch.device("cpu"))
    assert tall.test[0].shape == (6, 2, 16, 16) and tall.model(tall.test[0]).shape == (6, 2, 16, 16)
    assert tall.test[0][:, 1, 0, 0].tolist() == pytest.approx([(z - 19.5) / 100 for z in (4, 5, 6, 24, 25, 26)])


def test_a_users_folder_mistakes_are_named(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a_image.png")
    with pytest.raises(DataError, match="expected a_mask.png beside it"):
        segmentation.segmentation_pairs(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + np.array([0, 9, 0], np.uint8)).save(tmp_path / "a_mask.png")
    with pytest.raises(DataError, match="not colour"):
        segmentation.segmentation_pairs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no image/label pairs"):
        segmentation.segmentation_pairs(empty)
    import nibabel as nib
    series = tmp_path / "series"
    series.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.float32), np.eye(4)), series / "b_image.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), series / "b_label.nii.gz")
    with pytest.raises(DataError, match=r"b_image.nii.gz holds an array of shape 8x8x4x2: give one 2-D or 3-D"):
        segmentation.segmentation_pairs(series)


def test_masks_whose_edges_were_smoothed_into_many_grey_levels_are_noted(tmp_path, capsys):
    from PIL import Image, ImageDraw
    for i in range(3):   # a disc drawn at 64 pixels and resized to 48: its edge takes every grey level between
        mask = Image.new("L", (64, 64))
        ImageDraw.Draw(mask).ellipse([10 + i, 10, 50, 50], fill=255)
        mask.resize((48, 48), Image.BILINEAR).save(tmp_path / f"c{i}_mask.png")
        Image.fromarray(np.full((48, 48), 100, np.uint8)).save(tmp_path / f"c{i}_image.png")
    cases, names, values = segmentation.labelled_cases({"data": str(tmp_path)})
    assert len(values) > 10 and "label values in" in capsys.readouterr().err
    for i in range(3):   # thresholded: two classes, no note
        mask = np.asarray(Image.open(tmp_path / f"c{i}_mask.png"))
        Image.fromarray(np.where(mask > 127, 255, 0).astype(np.uint8)).save(tmp_path / f"c{i}_mask.png")
    assert segmentation.labelled_cases({"data": str(tmp_path)})[2] == [0, 255] and not capsys.readouterr().err
    r = pillars("train", "brain-segment", "--out", str(tmp_path / "run"), *sets(f"data={tmp_path / 'nowhere'}"),
                check=False)
    assert r.returncode != 0 and "no such folder" in r.stderr
