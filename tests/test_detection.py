"""Object detection: NMS against a brute-force version, COCO AP against a hand computation, boxes that move
with flipped images, FCOS's shapes, targets and gradients, the packaged aerial images and their regions, and a
user's folder (Pascal VOC and YOLO) trained, evaluated, predicted on and explained through the command line."""
import json

import numpy as np
import pytest
import torch

from pillars import metrics
from pillars.config import ConfigError
from pillars.data.registry import InputFileError
from pillars.models import cnn
from pillars.tasks import detection
from tests.conftest import pillars, sets


def brute_force_nms(boxes, scores, iou):
    """NMS as the definition says it, one box at a time in plain Python."""
    def overlap(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union
    left = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    while left:
        best = left.pop(0)
        keep.append(best)
        left = [i for i in left if overlap(boxes[best], boxes[i]) <= iou]
    return keep


def test_nms_matches_a_brute_force_version():
    g = torch.Generator().manual_seed(0)
    for n, iou in ((1, 0.5), (60, 0.5), (300, 0.3), (300, 0.7)):
        xy = torch.rand(n, 2, generator=g) * 200
        wh = 10 + torch.rand(n, 2, generator=g) * 40
        boxes, scores = torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)
        assert cnn.nms(boxes, scores, iou).tolist() == brute_force_nms(boxes.tolist(), scores.tolist(), iou)


def test_nms_per_class_keeps_overlapping_boxes_of_different_classes():
    boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
    scores, classes = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1])
    assert cnn.batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 2]
    assert cnn.box_iou(boxes[:1], boxes[1:2]).item() == pytest.approx(81 / 119)


def test_coco_ap_matches_a_hand_computation():
    """Three true crowns in two images; detections: a hit (0.9), a false alarm (0.8), a hit (0.7), one crown
    missed. Precision / recall after each: 1 / 1/3, 1/2 / 1/3, 2/3 / 2/3. COCO interpolates precision at 101
    recall points: 1 at r = 0 .. 0.33 (34 points), 2/3 at 0.34 .. 0.66 (33), 0 above: AP = 56 / 101, the
    same at every IoU (the hits are exact)."""
    truth = [(np.array([[10, 10, 50, 50], [100, 100, 140, 150]]), np.array([0, 0])),
             (np.array([[20, 30, 60, 90]]), np.array([0]))]
    found = [np.array([[10, 10, 50, 50, 0.9, 0], [200, 200, 240, 240, 0.8, 0]]),
             np.array([[20, 30, 60, 90, 0.7, 0]])]
    gt = metrics.coco_ground_truth(truth, ["Tree"], [(300, 300), (300, 300)])
    result = metrics.coco_average_precision(gt, metrics.coco_results(found))
    assert result["ap50"] == pytest.approx(56 / 101)
    assert result["ap"] == pytest.approx(56 / 101)
    assert result["recall"] == pytest.approx(2 / 3)
    # a box shifted to IoU 0.6 counts at IoU 0.5 and 0.55 only, of the ten thresholds
    shifted = [found[0], np.array([[20, 30 + 15, 60, 90 + 15, 0.7, 0]])]
    iou = cnn.box_iou(torch.tensor([[20., 45, 60, 105]]), torch.tensor([[20., 30, 60, 90]])).item()
    assert 0.6 <= iou < 0.65
    again = metrics.coco_average_precision(gt, metrics.coco_results(shifted))
    assert again["ap50"] == pytest.approx(56 / 101)
    assert again["ap"] == pytest.approx((56 / 101 * 3 + 34 / 101 * 7) / 10)


def test_detection_sums_add_up_over_batches_and_processes():
    d = [torch.tensor([[1., 2, 3, 4, 0.9, 0]]), torch.zeros(0, 6)]
    a = metrics.detection_sums(d, torch.tensor([0, 2]), 3, 5)
    b = metrics.detection_sums([torch.tensor([[5., 6, 7, 8, 0.5, 0], [1, 1, 2, 2, 0.4, 0]])], torch.tensor([1]), 3, 5)
    total = {k: (a[k] + b[k]).numpy() for k in a}
    found = metrics.summed_detections(total)
    assert sorted(found) == [0, 1, 2] and len(found[0]) == 1 and len(found[1]) == 2 and len(found[2]) == 0
    np.testing.assert_allclose(found[1][:, 4], [0.5, 0.4])


def test_random_flips_move_the_boxes_with_the_objects():
    torch.manual_seed(0)
    images = torch.zeros(16, 3, 64, 96, dtype=torch.uint8)
    boxes = torch.tensor([[3., 5, 20, 30], [50, 40, 90, 60]]).repeat(16, 1, 1)
    for b in boxes[0].long().tolist():
        images[:, :, b[1]:b[3], b[0]:b[2]] = 255
    flipped, moved = detection.random_flips(images, boxes)
    assert not torch.equal(flipped, images) and not torch.equal(flipped, images.flip(-1))   # some flipped, not all
    for img, bs in zip(flipped, moved.long().tolist()):
        lit = torch.zeros(64, 96, dtype=torch.bool)
        for x0, y0, x1, y1 in bs:
            assert (img[:, y0:y1, x0:x1] == 255).all()
            lit[y0:y1, x0:x1] = True
        assert (img[:, ~lit] == 0).all()


def tiny_fcos(classes=2):
    return cnn.FCOS(cnn.FCOSConfig(num_classes=classes, width=16, head_convs=1))


def test_fcos_shapes_locations_and_gradients():
    torch.manual_seed(0)
    model = tiny_fcos()
    x = torch.randn(2, 3, 96, 128)
    cls, dist, ctr = model(x)
    points, level = model.locations(96, 128)
    n = 12 * 16 + 6 * 8 + 3 * 4
    assert cls.shape == (2, n, 2) and dist.shape == (2, n, 4) and ctr.shape == (2, n) and points.shape == (n, 2)
    assert points[0].tolist() == [4, 4] and points[1].tolist() == [12, 4] and level.bincount().tolist() == [192, 48, 12]
    assert (dist > 0).all()
    enlarged = cnn.FCOS(cnn.FCOSConfig(width=16, head_convs=1, input_scale=1.5))   # sees the image 1.5x larger
    points2, _ = enlarged.locations(96, 128)
    assert enlarged(x)[0].shape[1] == len(points2) == 18 * 24 + 9 * 12 + 5 * 6 and points2[1, 0] == 12 / 1.5
    boxes = torch.tensor([[[10., 10, 60, 50], [0, 0, 0, 0]], [[30, 20, 90, 80], [64, 8, 120, 40]]])
    labels = torch.tensor([[1, -1], [0, 1]])
    loss = cnn.fcos_loss(model, x, boxes, labels)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert torch.isfinite(loss) and not missing


def test_fcos_targets_assign_locations_near_a_box_centre_to_it():
    model = tiny_fcos()
    boxes, labels = torch.tensor([[[16., 16, 48, 48]]]), torch.tensor([[1]])
    cls, dist = cnn.fcos_targets(model, boxes, labels, 64, 64)
    points, level = model.locations(64, 64)
    pos = cls[0] >= 0
    assert pos.any() and (cls[0][pos] == 1).all() and (level[pos] == 0).all()   # a 32-pixel box: P3 only
    centre = (points[pos] - 32).abs().max(1).values
    assert (centre < 1.5 * 8).all()                                            # center sampling, radius 1.5 strides
    p = points[pos]
    torch.testing.assert_close(dist[0][pos], torch.stack([p[:, 0] - 16, p[:, 1] - 16, 48 - p[:, 0], 48 - p[:, 1]], 1))


def test_fcos_overfits_one_batch_and_finds_its_boxes():
    torch.manual_seed(0)
    model = tiny_fcos(1)
    images = torch.full((2, 3, 64, 64), -1.0)
    boxes = torch.tensor([[[8., 8, 32, 32], [36, 36, 60, 60]], [[20, 4, 44, 28], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 0], [0, -1]])
    for i, b in enumerate(boxes):
        for (x0, y0, x1, y1), c in zip(b.long().tolist(), labels[i].tolist()):
            if c >= 0:
                images[i, :, y0:y1, x0:x1] = 1.0
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(80):
        opt.zero_grad()
        loss = cnn.fcos_loss(model, images, boxes, labels)
        loss.backward()
        opt.step()
    model.eval()
    found = cnn.fcos_detect(model, images, threshold=0.05)
    for i in range(2):
        truth = boxes[i][labels[i] >= 0]
        best = cnn.box_iou(truth, found[i][:, :4]).max(1).values
        assert (best > 0.5).all(), (found[i][:5], truth)


def test_the_packaged_aerial_images_and_their_held_out_regions():
    from pillars import data
    a = data.load("neon-trees")
    assert [len(a[f"{k}_boxes"]) for k in ("yell_a", "yell_b", "osbs", "soap")] == [574, 279, 61, 37]
    assert a["yell_a_image"].shape == (2472, 2299, 3) and a["osbs_image"].shape == (400, 400, 3)
    r = detection.regions(2472, 2299, 0.3, 64)
    assert r["train"][3] + 64 == r["valid"][1] == r["test"][1] and r["valid"][2] + 64 == r["test"][0]
    image = detection.BoxedImage("yell_a", a["yell_a_image"], a["yell_a_boxes"], ["Tree"] * 574)
    labels = np.zeros(574, dtype=np.int64)
    held = [detection.boxes_in(image, labels, r[s], whole=True)[0] for s in ("valid", "test")]
    assert all(len(h) > 50 for h in held)
    crops = detection.training_crops([(image, labels, r["train"])], 256)
    assert crops[0].shape[1:] == (3, 256, 256) and len(crops[0]) > 300
    # no training crop reads a held-out row: the crops' rows end where the training region ends
    last = a["yell_a_image"][r["train"][3] - 256:r["train"][3], -256:].transpose(2, 0, 1)
    assert (last == crops[0][-1].numpy()).all()


def write_folder(folder, yolo: bool):
    """Three 256x256 images with bright squares and discs labelled as two classes."""
    from PIL import Image, ImageDraw
    folder.mkdir()
    rng = np.random.default_rng(0)
    if yolo:
        (folder / "classes.txt").write_text("square\ndisc\n")
    for n in range(3):
        img = Image.fromarray(rng.integers(0, 60, (256, 256, 3), dtype=np.uint8))
        draw, objects = ImageDraw.Draw(img), []
        for k in range(6):
            x, y, s = int(rng.integers(10, 200)), int(rng.integers(10, 200)), int(rng.integers(20, 40))
            kind = k % 2
            (draw.rectangle if kind == 0 else draw.ellipse)([x, y, x + s, y + s], fill=(230, 230, 90))
            objects.append((kind, x, y, x + s, y + s))
        img.save(folder / f"img{n}.png")
        if yolo:
            (folder / f"img{n}.txt").write_text("".join(
                f"{c} {(x0 + x1) / 512} {(y0 + y1) / 512} {(x1 - x0) / 256} {(y1 - y0) / 256}\n"
                for c, x0, y0, x1, y1 in objects))
        else:
            (folder / f"img{n}.xml").write_text("<annotation>" + "".join(
                f"<object><name>{['square', 'disc'][c]}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for c, x0, y0, x1, y1 in objects)
                + "</annotation>")


def test_a_users_folder_trains_evaluates_predicts_and_explains(tmp_path, monkeypatch):
    folder, run = tmp_path / "boxes", tmp_path / "run"
    write_folder(folder, yolo=False)
    out = pillars("train", "tree-detect", "--out", str(run), *sets(f"data={folder}", "max_steps=4", "tile=64",
                  "width=16", "head_convs=1", "batch_size=4", "eval_every=4", "pretrained=false", "held_out=0.4",
                  "gap=16"))
    summary = json.loads((run / "summary.json").read_text())
    assert {"ap50", "ap", "recall"} <= set(summary["final"]) and "test ap50" in out.stdout + out.stderr
    results = json.loads((run / "detections-test.json").read_text())
    truth = json.loads((run / "annotations-test.json").read_text())
    assert [c["name"] for c in truth["categories"]] == ["disc", "square"]
    assert len(truth["images"]) == 3 and all({"image_id", "bbox", "score", "category_id"} <= set(r) for r in results)
    pred = pillars("predict", str(run), str(folder / "img0.png"))
    assert "img0.png" in pred.stdout and (run / "predictions" / "img0.png").exists()
    boxes = [line for line in pred.stdout.splitlines() if line.startswith("  ")]
    one = pillars("predict", str(run), str(folder / "img0.png"), "--top-k", "1").stdout.splitlines()
    assert [line for line in one if line.startswith("  ")] == boxes[:1]
    refused = pillars("predict", str(run), str(folder / "img0.png"), "--invert", "yes", check=False)
    assert refused.returncode != 0 and "leave --invert out" in refused.stderr
    from pillars import runs
    from pillars.tasks import detection   # an untrained detector scores little: print every box it finds
    monkeypatch.setattr(detection, "SHOWN", 0.0)
    cfg = {**runs.saved_config(run)[1], "score_threshold": 0.0}
    every, best = [], []
    for top_k, lines in ((None, every), (3, best)):
        detection.Detector().predict(run, cfg, [str(folder / "img0.png")], top_k, "auto", "cpu", lines.append)
    scores = [float(line.split()[1]) for line in every[1:]]
    assert len(scores) > 3 and scores == sorted(scores, reverse=True)
    assert best[1:] == every[1:4] and best[0].startswith(f"{folder / 'img0.png'}: the 3 best of {len(scores)} ")
    pillars("explain", str(run))
    assert (run / "detections-1.png").exists() and (run / "detections-3.png").exists()


def test_yolo_labels_become_boxes_in_pixels_with_their_class_names(tmp_path):
    from pillars.data.aerial import load_box_folder
    write_folder(tmp_path / "yolo", yolo=True)
    write_folder(tmp_path / "voc", yolo=False)
    yolo, voc = load_box_folder(tmp_path / "yolo"), load_box_folder(tmp_path / "voc")
    for a, b in zip(yolo, voc):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert a.names == b.names


def test_bad_box_folders_name_the_file_and_the_fix(tmp_path):
    from pillars.data.aerial import load_box_folder
    write_folder(tmp_path / "f", yolo=True)
    (tmp_path / "f" / "img1.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(InputFileError, match=r"img1.txt, line 1.*class cx cy w h"):
        load_box_folder(tmp_path / "f")
    (tmp_path / "f" / "img1.txt").write_text("0 0.5 0.5 20 30\n")
    with pytest.raises(InputFileError, match="fractions of the image"):
        load_box_folder(tmp_path / "f")
    (tmp_path / "f" / "img1.txt").unlink()
    with pytest.raises(InputFileError, match="img1.png has no labels beside it"):
        load_box_folder(tmp_path / "f")
    with pytest.raises(InputFileError, match="is not a folder"):
        load_box_folder(tmp_path / "missing")
    (tmp_path / "f" / "img1.txt").write_text("2 0.5 0.5 0.2 0.2\n")   # classes.txt names 0 and 1
    with pytest.raises(InputFileError, match=r"img1.txt, line 1: class 2 does not exist \(classes.txt names 2"):
        load_box_folder(tmp_path / "f")
    (tmp_path / "f" / "img1.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "f" / "classes.txt").write_bytes("square\ndisc\n".encode("utf-16"))   # Windows Notepad's "Unicode"
    with pytest.raises(InputFileError, match="classes.txt, line 1: byte 0xff is not UTF-8"):
        load_box_folder(tmp_path / "f")


def test_held_out_regions_without_a_box_are_said_to_have_no_ap(tmp_path, capsys):
    from pillars import train
    write_folder(tmp_path / "top", yolo=True)
    for n in range(3):   # every box in the top half: the held-out bottom 30% has none
        (tmp_path / "top" / f"img{n}.txt").write_text("0 0.3 0.2 0.1 0.1\n1 0.7 0.3 0.1 0.1\n")
    cfg = train.resolve_config("tree-detect", overrides={"data": str(tmp_path / "top"), "pretrained": "false"})
    detection.build_detection(cfg, torch.device("cpu"))
    err = " ".join(capsys.readouterr().err.split())
    assert "the validation regions (the bottom 30% of each image, left half) hold no labelled box" in err
    assert "the test regions (the bottom 30% of each image, right half)" in err


def test_voc_boxes_outside_the_image_or_for_another_size_are_named(tmp_path, capsys):
    from pillars.data.aerial import load_box_folder
    write_folder(tmp_path / "v", yolo=False)
    xml = tmp_path / "v" / "img0.xml"
    good = xml.read_text()
    outside = "<object><name>disc</name><bndbox><xmin>300</xmin><ymin>300</ymin><xmax>340</xmax><ymax>340</ymax>" \
              "</bndbox></object>"
    xml.write_text(good.replace("<annotation>", "<annotation>" + outside))   # first of 7, wholly off the 256x256
    kept = load_box_folder(tmp_path / "v")[0]
    assert len(kept.boxes) == len(kept.names) == 6 and kept.names == ["square", "disc"] * 3   # names stay in step
    assert "img0.png: 1 of its 7 boxes lie wholly outside the 256x256 image" in capsys.readouterr().err
    xml.write_text(good.replace("<xmax>", "<xmax>-", 1))
    with pytest.raises(InputFileError, match=r"img0.xml: object 1 has xmin .* a box needs xmax > xmin"):
        load_box_folder(tmp_path / "v")
    xml.write_text(good.replace("<annotation>", "<annotation><size><width>512</width><height>512</height></size>"))
    with pytest.raises(InputFileError, match="img0.xml is for a 512x512 image, but img0's image is 256x256"):
        load_box_folder(tmp_path / "v")
    with pytest.raises(ConfigError, match="multiple of 32"):
        detection.DetectionOptions.check({"tile": 100, "gap": 0}, None)
