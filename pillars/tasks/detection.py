"""Object detection: FCOS on EfficientNet-Lite0 finds tree crowns in aerial images (`tree-detect`), or the
objects of a user's own labelled images (`--set data=DIR`).

Held-out regions, not held-out tiles: neighbouring tiles of one photograph share light, season and trees cut
by their borders, so a random split of tiles would leak. Each of the main images (the two Yellowstone crops;
every image of a user's folder) is cut into bands: the top (1 - held_out) of its rows is trained on, and of
the bottom rows the left half is the validation region and the right half the test region, with `gap`
pixels between any two regions that no crop reads (more than the radius of a crown: none is seen by two).
A box belongs to the region that holds its centre. Training reads square crops of the training regions at
random positions (`tile` pixels, flipped at random, boxes moved with them); evaluation reads each held-out
region whole. The packaged images of the two other sites (Florida and California) form a second test of
generalising to new places, read at the same time as the main test regions and reported apart (`ap50_other`).

AP is COCO's, from pycocotools: `ap50` at IoU 0.5 and `ap` averaged over IoU 0.5:0.95. Every evaluation of
the test set writes detections-test.json (COCO results format) and annotations-test.json (the test regions'
ground truth in COCO format), so anyone can score the detections again.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pillars import data, metrics
from pillars.config import ConfigError, Range, note
from pillars.data.batches import TensorBatches
from pillars.data.aerial import BoxedImage, load_box_folder
from pillars.data.weights import efficientnet_lite0_imagenet
from pillars.devices import resolve_device
from pillars.models import cnn
from pillars.tasks import Family, Job, LoadedRun, Task, register, trained_from_inputs


@dataclass
class DetectionInputs:
    """What a detector expects of an image: RGB scaled to [-1, 1] (EfficientNet-Lite0's convention), and the
    class names of its outputs."""
    classes: list[str]


@dataclass
class DetectionOptions:
    data: str = ""               # a folder of your own images, each with IMG.xml (Pascal VOC) or IMG.txt (YOLO)
    pretrained: bool = True      # the backbone from the ImageNet weights (false: the same network from scratch)
    tile: int = 192              # side of the training crops, in pixels (before input_scale)
    held_out: float = 0.3        # the bottom fraction of each main image: validation (left) and test (right)
    gap: int = 64                # pixels between training, validation and test regions, read by none
    flip: bool = True            # augmentation: random horizontal and vertical flips of the training crops
    width: int = 64              # channels of the feature pyramid and the head
    head_convs: int = 2          # conv layers per head branch (the paper: 4 of 256 channels)
    input_scale: float = 1.5     # the network enlarges every image by this first: more locations per crown
    score_threshold: float = 0.05  # detections kept before NMS: class probability above this
    nms_iou: float = 0.6         # non-maximum suppression: a box overlapping a better one by more is dropped
    max_detections: int = 300    # per evaluated region (COCO's limit of 100 is too few for a forest)

    ranges = {"held_out": Range(0, 1, "()", "the rest is trained on"),
              "nms_iou": Range(0, 1, "(]", "an IoU"), "score_threshold": Range(0, 1, "[)", "a probability")}

    @classmethod
    def check(cls, cfg: dict, task: Task) -> None:
        if cfg["tile"] < 32 or cfg["tile"] % 32:
            raise ConfigError(f"tile must be a multiple of 32 (the backbone halves it five times), at least 32, "
                              f"not {cfg['tile']}")
        if cfg["gap"] < 0:
            raise ConfigError(f"gap must be 0 or more pixels, not {cfg['gap']}")


def network(cfg: dict, classes: int, pretrained: bool = False) -> cnn.FCOS:
    model = cnn.FCOS(cnn.FCOSConfig(num_classes=classes, width=cfg["width"], head_convs=cfg["head_convs"],
                                    input_scale=cfg["input_scale"]))
    if pretrained:
        state = cnn.efficientnet_from_reference(efficientnet_lite0_imagenet())
        own = model.backbone.state_dict()
        model.backbone.load_state_dict({k: v for k, v in state.items() if k in own})
    return model


def scaled(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1], as EfficientNet-Lite0 was trained."""
    return images.float().div_(127.5).sub_(1)


def detect(model: cnn.FCOS, images: torch.Tensor, sizes: torch.Tensor | None, cfg: dict) -> list[torch.Tensor]:
    """Each uint8 image's detections (K, 6), with the run's threshold, NMS IoU and limit (`cnn.fcos_detect`)."""
    return cnn.fcos_detect(model, scaled(images), sizes, cfg["score_threshold"], iou=cfg["nms_iou"],
                           max_detections=cfg["max_detections"])


# ----------------------------------------------------------------------------- regions

Rect = tuple[int, int, int, int]   # x0, y0, x1, y1 in pixels, far edges exclusive


def regions(h: int, w: int, held_out: float, gap: int) -> dict[str, Rect]:
    """The training, validation and test regions of one h x w image (see the module's docstring)."""
    band = round(h * (1 - held_out))
    half = gap // 2
    out = {"train": (0, 0, w, band - half), "valid": (0, band + half, w // 2 - half, h),
           "test": (w // 2 + half, band + half, w, h)}
    for name, (x0, y0, x1, y1) in out.items():
        if x1 - x0 < 32 or y1 - y0 < 32:
            raise ConfigError(f"a {w}x{h} image leaves its {name} region {x1 - x0}x{y1 - y0} pixels with "
                              f"held_out={held_out} and gap={gap}: change them, or use larger images")
    return out


def boxes_in(image: BoxedImage, labels: np.ndarray, rect: Rect, whole: bool) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of `image` in `rect`, in the region's coordinates and clipped to it: with `whole`, the boxes
    whose centre it holds (a held-out region's); otherwise those at least half inside it (a training crop's)."""
    x0, y0, x1, y1 = rect
    b = image.boxes
    clipped = np.stack([b[:, 0].clip(x0, x1), b[:, 1].clip(y0, y1), b[:, 2].clip(x0, x1), b[:, 3].clip(y0, y1)], 1)
    if whole:
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        keep = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    else:
        area = lambda a: (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)   # noqa: E731
        keep = area(clipped) >= 0.5 * area(b)
    return (clipped[keep] - np.array([x0, y0, x0, y0], dtype=np.float32)), labels[keep]


def crop(image: np.ndarray, rect: Rect, side_h: int, side_w: int) -> np.ndarray:
    """The region of an (H, W, 3) image as (3, side_h, side_w), zero-padded at the bottom and right."""
    x0, y0, x1, y1 = rect
    out = np.zeros((3, side_h, side_w), dtype=np.uint8)
    out[:, :y1 - y0, :x1 - x0] = image[y0:y1, x0:x1].transpose(2, 0, 1)
    return out


def padded_boxes(per_image: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, M, 4) boxes and (N, M) labels, -1 marking the padding, from each image's boxes and labels."""
    m = max(1, max(len(b) for b, _ in per_image))
    boxes, labels = torch.zeros(len(per_image), m, 4), torch.full((len(per_image), m), -1, dtype=torch.long)
    for i, (b, c) in enumerate(per_image):
        boxes[i, :len(b)] = torch.from_numpy(np.asarray(b, dtype=np.float32))
        labels[i, :len(c)] = torch.from_numpy(np.asarray(c, dtype=np.int64))
    return boxes, labels


def training_crops(images: list[tuple[BoxedImage, np.ndarray, Rect]], tile: int) -> tuple[torch.Tensor, ...]:
    """Every `tile` x `tile` crop of the training regions at a stride of a quarter tile (the last one flush with
    the region's edge): (N, 3, tile, tile) uint8, boxes, labels. A region smaller than a tile is one crop,
    zero-padded."""
    pixels, truth = [], []
    for image, labels, (x0, y0, x1, y1) in images:
        step = max(tile // 4, 1)
        xs = sorted({*range(x0, max(x1 - tile, x0) + 1, step), max(x1 - tile, x0)})
        ys = sorted({*range(y0, max(y1 - tile, y0) + 1, step), max(y1 - tile, y0)})
        for y in ys:
            for x in xs:
                rect = (x, y, min(x + tile, x1), min(y + tile, y1))
                pixels.append(crop(image.image, rect, tile, tile))
                truth.append(boxes_in(image, labels, rect, whole=False))
    return (torch.from_numpy(np.stack(pixels)), *padded_boxes(truth))


def held_out_regions(parts: list[tuple[BoxedImage, np.ndarray, Rect]]):
    """The held-out regions, each whole and zero-padded to the largest: (N, 3, H, W) uint8, boxes, labels,
    their true (height, width); and each one's ground truth (boxes, labels) and name."""
    side_h = max(r[3] - r[1] for _, _, r in parts)
    side_w = max(r[2] - r[0] for _, _, r in parts)
    pixels, truth, sizes, names = [], [], [], []
    for image, labels, rect in parts:
        pixels.append(crop(image.image, rect, side_h, side_w))
        truth.append(boxes_in(image, labels, rect, whole=True))
        sizes.append((rect[3] - rect[1], rect[2] - rect[0]))
        names.append(f"{image.name} x {rect[0]}-{rect[2]}, y {rect[1]}-{rect[3]}")
    tensors = (torch.from_numpy(np.stack(pixels)), *padded_boxes(truth), torch.tensor(sizes))
    return tensors, truth, sizes, names


# ----------------------------------------------------------------------------- the recipe

def packaged_images() -> tuple[list[BoxedImage], list[BoxedImage], list[str]]:
    """The main images (split into regions), the other sites' images (a second test) and the class names."""
    a, meta = data.load("neon-trees"), data.get("neon-trees").meta

    def image(key):
        return BoxedImage(key, a[f"{key}_image"], a[f"{key}_boxes"], [meta["classes"][i] for i in a[f"{key}_labels"]])
    return ([image(k) for k in meta["images"] if k not in meta["other sites"]],
            [image(k) for k in meta["other sites"]], meta["classes"])


@dataclass
class DetectionJob(Job):
    region_names: list[str] = dataclasses.field(default_factory=list)   # of the evaluated regions, valid first


def build_detection(cfg: dict, device: torch.device) -> DetectionJob:
    if cfg["data"]:
        main, other = load_box_folder(cfg["data"]), []
        classes = sorted({n for image in main for n in image.names})
    else:
        main, other, classes = packaged_images()
    index = {c: i for i, c in enumerate(classes)}
    split: dict[str, list] = {"train": [], "valid": [], "test": []}

    def labels_of(image: BoxedImage) -> np.ndarray:
        return np.array([index[n] for n in image.names], dtype=np.int64)
    for image in main:
        for name, rect in regions(*image.image.shape[:2], cfg["held_out"], cfg["gap"]).items():
            split[name].append((image, labels_of(image), rect))
    for image in other:   # the other sites: whole images, a second test
        split["test"].append((image, labels_of(image), (0, 0, image.image.shape[1], image.image.shape[0])))
    train = training_crops(split["train"], cfg["tile"])
    valid, valid_truth, valid_sizes, valid_names = held_out_regions(split["valid"])
    test, test_truth, test_sizes, test_names = held_out_regions(split["test"])
    n_valid, n_main_test = len(valid_truth), len(main)
    for name, parts in (("validation", valid_truth), ("test", test_truth[:n_main_test])):
        if not any(len(boxes) for boxes, _ in parts):   # AP is then undefined: nan, and nothing to choose on
            note(f"note: the {name} regions (the bottom {cfg['held_out']:.0%} of each image, "
                 f"{'left' if name == 'validation' else 'right'} half) hold no labelled box, so their AP is "
                 "undefined (nan); label boxes there, or add images")
    truth, sizes = valid_truth + test_truth, valid_sizes + test_sizes
    groups = {"valid": list(range(n_valid)), "test": list(range(n_valid, n_valid + n_main_test)),
              "other": list(range(n_valid + n_main_test, len(truth)))}
    model = network(cfg, len(classes), cfg["pretrained"])

    def loss(model, batch):
        images, boxes, labels = batch
        if cfg["flip"]:
            images, boxes = random_flips(images, boxes)
        return cnn.fcos_loss(model, scaled(images), boxes, labels)

    def eval_sums(model, batch):
        images, _, _, region_sizes, idx = batch
        found = detect(model, images, region_sizes, cfg)
        return metrics.detection_sums(found, idx, len(truth), cfg["max_detections"])

    def scores(found: dict[int, np.ndarray], group: str) -> dict[str, float]:
        ids = [i for i in groups[group] if i in found]
        if not ids:
            return {}
        gt = metrics.coco_ground_truth([truth[i] for i in ids], classes, [sizes[i] for i in ids])
        return metrics.coco_average_precision(gt, metrics.coco_results([found[i] for i in ids]), cfg["max_detections"])

    def summary(sums):
        found = metrics.summed_detections(sums)
        out = {}
        for group, suffix in (("valid", ""), ("test", ""), ("other", "_other")):
            out.update({k + suffix: v for k, v in scores(found, group).items()})
        out["detections"] = float(sum(len(found[i]) for i in found if i not in groups["other"]))
        return out

    def outputs(split_name: str, sums: dict) -> dict[str, str]:
        found = metrics.summed_detections(sums)
        ids = groups["test"] + groups["other"]
        if split_name != "test" or not all(i in found for i in ids):
            return {}
        gt = metrics.coco_ground_truth([truth[i] for i in ids], classes, [sizes[i] for i in ids])
        for image, name in zip(gt["images"], test_names):
            image["file_name"] = name
        return {"detections-test.json": json.dumps(metrics.coco_results([found[i] for i in ids])) + "\n",
                "annotations-test.json": json.dumps(gt) + "\n"}

    def region(i: int) -> np.ndarray:   # held-out region i (valid first) as (H, W, 3) pixels
        pixels = valid[0][i] if i < n_valid else test[0][i - n_valid]
        return pixels[:, :sizes[i][0], :sizes[i][1]].permute(1, 2, 0).numpy()

    def local_maxima() -> dict[str, float]:
        """The classic method on the same test regions: its index, smoothing and spacing chosen on the
        validation regions, its box the median training crown's side."""
        from pillars.baselines import local_maxima_crowns
        crowns = np.concatenate([boxes_in(im, lab, rect, whole=True)[0] for im, lab, rect in split["train"]])
        side = float(np.median(np.sqrt((crowns[:, 2] - crowns[:, 0]) * (crowns[:, 3] - crowns[:, 1]))))

        def ap(group, params):
            return scores({i: local_maxima_crowns(region(i), side, *params, limit=cfg["max_detections"])
                           for i in groups[group]}, group)
        grid = [(sigma, spacing, index) for index in ("exg", "dark") for sigma in (2, 4, 8) for spacing in (8, 16, 24)]
        best = max(grid, key=lambda params: ap("valid", params)["ap50"])
        out = {f"local_maxima_{k}": v for k, v in ap("test", best).items()}
        out.update({f"local_maxima_{k}_other": v for k, v in ap("other", best).items()})
        return out

    return DetectionJob(
        model=model, baselines=local_maxima, train=TensorBatches(train, cfg["batch_size"], cfg["seed"]),
        valid=(*valid, torch.arange(n_valid)), test=(*test, torch.arange(n_valid, len(truth))), loss=loss,
        eval_sums=eval_sums, summary=summary, outputs=outputs, conv=True, inputs=DetectionInputs(classes),
        region_names=valid_names + test_names)


def random_flips(images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a random half of the crops left to right and, independently, a random half top to bottom,
    moving their boxes with them: x -> W - x swaps a box's left and right edges (y likewise)."""
    n, _, h, w = images.shape
    lr = torch.rand(n, device=images.device) < 0.5
    tb = torch.rand(n, device=images.device) < 0.5
    images = torch.where(lr[:, None, None, None], images.flip(-1), images)
    images = torch.where(tb[:, None, None, None], images.flip(-2), images)
    x0, y0, x1, y1 = boxes.unbind(-1)
    x0, x1 = torch.where(lr[:, None], w - x1, x0), torch.where(lr[:, None], w - x0, x1)
    y0, y1 = torch.where(tb[:, None], h - y1, y0), torch.where(tb[:, None], h - y0, y1)
    return images, torch.stack([x0, y0, x1, y1], -1)


# ----------------------------------------------------------------------------- the family

SHOWN = 0.3   # the score from which explain and predict draw and print a box (AP reads every box)


class Detector(Family):
    """Object detectors: AP as the headline, predict draws and prints the boxes found in a user's images,
    explain draws detections and misses on the held-out regions."""

    what = "object detector"
    baseline_names = {"local_maxima_ap50": ("local maxima of greenness AP50", "{:.3f}"),
                      "local_maxima_ap": ("COCO AP", "{:.3f}"),
                      "local_maxima_ap50_other": ("other sites AP50", "{:.3f}")}
    report_figures = ("curves.png", "detections-1.png", "detections-3.png")   # a Yellowstone test region, Florida

    def headline(self, summary: dict) -> str:
        f = summary["final"]
        other = f" (other sites {f['ap50_other']:.3f})" if "ap50_other" in f else ""
        return f"AP50 {f['ap50']:.3f}, COCO AP {f['ap']:.3f} on the held-out test regions{other}"

    def explain(self, run: LoadedRun, log: Callable[[str], None], light: bool = False, source: str = "") -> dict:
        """detections-N.png for each test region: the boxes scored SHOWN or more, green where they find a crown
        (IoU 0.5 with a true box no better box took), red where they do not, over the true boxes in blue."""
        from pillars.plots import draw_boxes
        job = run.job
        images, boxes, labels, sizes, _ = job.test
        figures = {}
        for i in range(len(images)):
            found = detect(job.model.eval(), images[i:i + 1].to(run.device), sizes[i:i + 1], run.cfg)[0].cpu()
            h, w = sizes[i].tolist()
            truth, shown = boxes[i][labels[i] >= 0], found[:, 4] >= SHOWN
            hits = matched(found[shown, :4], found[shown, 4], truth, 0.5)
            path, name = run.run_dir / f"detections-{i + 1}.png", job.region_names[len(job.valid[0]) + i]
            draw_boxes(images[i, :, :h, :w], found[shown, :4], truth, hits, path)
            figures[name] = {"file": path.name, "crowns": len(truth), "found": int(hits.sum()),
                             "false_alarms": int((~hits).sum())}
            log(f"wrote {path}: test region {name}: {int(hits.sum())} of {len(truth)} true boxes found, "
                f"{int((~hits).sum())} false alarms (boxes scored {SHOWN} or more)")
        return {"detections": figures}

    def predict(self, run_dir: Path, cfg: dict, paths: list[str], top_k: int | None, invert: str, device: str,
                log: Callable[[str], None]) -> None:
        """The boxes scored SHOWN or more in each image (at most `top_k` of them), printed best first and drawn
        into RUN/predictions/IMG.png."""
        if invert != "auto":
            raise ConfigError(f"--invert {invert} inverts a photo's grey levels for a classifier; {run_dir} is a "
                              f"{self.what}, which reads the colours as they are: leave --invert out")
        from pillars.data.aerial import TILE
        from pillars.data.folder import open_image
        from pillars.plots import draw_boxes
        device = resolve_device(device)
        model, inputs = trained_from_inputs(Path(run_dir), cfg, device, lambda d: DetectionInputs(**d),
                                            lambda c, i: network(c, len(i.classes)), build_detection)
        for path in paths:
            pixels = torch.from_numpy(np.array(open_image(Path(path), TILE))).permute(2, 0, 1).contiguous()
            found = detect(model, pixels[None].to(device), None, cfg)[0].cpu()
            scored = found[found[:, 4] >= SHOWN]
            shown = scored[scored[:, 4].argsort(descending=True)][:top_k]
            target = Path(run_dir) / "predictions" / f"{Path(path).stem}.png"
            draw_boxes(pixels, shown[:, :4], None, None, target, scores=shown[:, 4])
            best = f"the {len(shown)} best of " if len(shown) < len(scored) else ""
            log(f"{path}: {best}{len(scored)} {'/'.join(inputs.classes)} boxes scored {SHOWN} or more -> {target}")
            for x0, y0, x1, y1, score, c in shown.tolist():
                log(f"  {inputs.classes[int(c)]:<12} {score:5.3f}  x {x0:7.1f} - {x1:7.1f}  y {y0:7.1f} - {y1:7.1f}")


def matched(boxes: torch.Tensor, scores: torch.Tensor, truth: torch.Tensor, iou: float) -> torch.Tensor:
    """Which detections are true positives at `iou`: in order of score, each takes the best-overlapping true box
    not yet taken (COCO's and VOC's greedy matching)."""
    hit = torch.zeros(len(boxes), dtype=torch.bool)
    if len(boxes) == 0 or len(truth) == 0:
        return hit
    overlaps = cnn.box_iou(boxes, truth.to(boxes))
    free = torch.ones(len(truth), dtype=torch.bool)
    for i in scores.argsort(descending=True).tolist():
        o = torch.where(free, overlaps[i], torch.full_like(overlaps[i], -1))
        j = int(o.argmax())
        if o[j] >= iou:
            hit[i], free[j] = True, False
    return hit


register(Task(
    name="tree-detect",
    description="FCOS on an ImageNet-pretrained EfficientNet-Lite0 finds tree crowns in NEON aerial images "
                "(--set pretrained=false: from scratch; --set data=DIR: your own labelled images)",
    dataset="neon-trees + efficientnet-lite0-imagenet", model="FCOS (EfficientNet-Lite0, P3-P5 pyramid)",
    objective="focal loss + GIoU + centerness", metric="ap50", options=DetectionOptions,
    build=build_detection, family=Detector(),
    defaults={"max_steps": 350, "batch_size": 8, "lr": 1e-3, "weight_decay": 1e-4, "warmup_steps": 50,
              "eval_every": 100, "eval_batch_size": 1, "log_every": 10},
))
