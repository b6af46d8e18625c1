"""Aerial images of tree crowns with their boxes (the NEON images that `deepforest` ships), and a user's own
folder of images with box labels in Pascal VOC or YOLO format.

The packaged set is four real RGB orthophotos at 10 cm a pixel from the US National Ecological Observatory
Network, every crown boxed by hand: two large crops of Yellowstone (YELL, 2299x2472 with 574 trees and
1249x1035 with 279) and one 400x400 tile from each of two other sites, Ordway-Swisher in Florida (OSBS, 61)
and Soaproot Saddle in California (SOAP, 37, labelled Alive or Dead: here both are trees). Each image is an
array `NAME_image` (H, W, 3) uint8 with `NAME_boxes` (N, 4) float32 (x0, y0, x1, y1 in pixels, x to the
right, y down, the far edges exclusive) and `NAME_labels` (N,) class indices into meta["classes"].
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pillars.config import note
from pillars.data.folder import open_image
from pillars.data.registry import Dataset, InputFileError, PyPI, RawFile, register
from pillars.data.text import read_user_text

DEEPFOREST = ("deepforest", "2.1.0", "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54")
IMAGES = {   # name in the arrays -> (file stem in deepforest/data, sha256 of the PNG, of the XML)
    "yell_a": ("2019_YELL_2_528000_4978000_image_crop2",
               "a9bdb0f4447fdd899d22f567e0e20ba8320c5413b2ad0cd0ac8d9f3b6e0f9767",
               "bd431af6a5086d721eb731b22f5ea28cd8a8eab06883efc1c665391acbc68e11"),
    "yell_b": ("2019_YELL_2_541000_4977000_image_crop",
               "178e58a23cc2642226a364a30f71bd9258ddc1b012c826f12250914a90c7a131",
               "cefe4b96888bacbf8af1674f000082e549aa707aa6590d545effb23e43f26631"),
    "osbs": ("OSBS_029", "d9477c6a00e4902c7bee487d4c5582c3b8b9a2f77f3908a29628b816b291e6ee",
             "1f68c4011d7b351c29ca755072e77f3d16e6fd1f995bd05a9dd4eb952b55373c"),
    "soap": ("SOAP_061", "256508f1a62149bec4a80879077a865caf50e8cace095e6564c76befa480d424",
             "4833280af75fd9c47965a93e38945282835e9e725cac412bdb9469d63480947c"),
}


# the fix for an image over Pillow's pixel limit (a detector is not helped by a resized image)
TILE = ("cut it into tiles, e.g. crops of 4,000 pixels a side (gdal_retile.py): the detector reads images in tiles "
        "at their own scale, and a resized image would shrink the objects")


@dataclass
class BoxedImage:
    """One image and its labelled boxes."""
    name: str
    image: np.ndarray        # (H, W, 3) uint8
    boxes: np.ndarray        # (N, 4) float32 x0, y0, x1, y1
    names: list[str]         # the class name of each box


def read_voc(path: Path, shape: tuple | None = None) -> tuple[np.ndarray, list[str]]:
    """The boxes (N, 4) and class names of a Pascal VOC annotation file (`<object><name>` and `<bndbox>`).
    With the image's `shape`, a `<size>` that names another width and height is refused: the boxes would land
    in the wrong places (labels of another image, or of the image before it was resized)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputFileError(f"{path} cannot be read as Pascal VOC XML ({e}); fix or remove it") from None
    try:
        size = int(float(root.findtext("size/width"))), int(float(root.findtext("size/height")))
    except (TypeError, ValueError):
        size = None   # no <size>, or not numbers: nothing to check against
    if shape is not None and size is not None and min(size) > 0 and size != (shape[1], shape[0]):
        raise InputFileError(f"{path} is for a {size[0]}x{size[1]} image, but {path.stem}'s image is "
                             f"{shape[1]}x{shape[0]}: label the image as it is (or scale the boxes with it)")
    boxes, names = [], []
    for i, obj in enumerate(root.iter("object")):
        box, name = obj.find("bndbox"), obj.findtext("name")
        try:
            boxes.append([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        except (AttributeError, TypeError, ValueError):
            raise InputFileError(f"{path}: object {i + 1} has no numeric <bndbox> xmin, ymin, xmax, ymax; fix "
                                 "it or remove the object") from None
        if not name:
            raise InputFileError(f"{path}: object {i + 1} has no <name>: give every box its class name")
        xmin, ymin, xmax, ymax = boxes[-1]
        if not (xmax > xmin and ymax > ymin):
            raise InputFileError(f"{path}: object {i + 1} has xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax "
                                 f"{ymax:g}: a box needs xmax > xmin and ymax > ymin (pixels, y down); fix or "
                                 "remove it")
        names.append(name.strip())
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), names


def read_yolo(path: Path, width: int, height: int, class_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The boxes (N, 4) in pixels and class names of a YOLO label file: a line `class cx cy w h` per box, the
    centre and size as fractions of the image's width and height; `class_names` name the class numbers (from
    classes.txt beside the images; the numbers themselves where there is none)."""
    boxes, names = [], []
    for n, line in enumerate(read_user_text(path, "YOLO labels (UTF-8 text)").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            c, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
            if len(parts) != 5:
                raise ValueError
        except (ValueError, IndexError):
            raise InputFileError(f"{path}, line {n}: {line!r} is not `class cx cy w h` (YOLO format: a class "
                                 "number, then the box's centre and size as fractions of the image)") from None
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            raise InputFileError(f"{path}, line {n}: centre and size must be fractions of the image (0 to 1), "
                                 f"not {cx} {cy} {w} {h}; pixels belong in Pascal VOC files (.xml)")
        if c < 0 or (class_names and c >= len(class_names)):
            known = f"classes.txt names {len(class_names)}, numbered 0 to {len(class_names) - 1}" if class_names \
                else "numbers start at 0"
            raise InputFileError(f"{path}, line {n}: class {c} does not exist ({known}); fix the number, or add "
                                 "the class to classes.txt")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        names.append(class_names[c] if class_names else str(c))
    return np.array(boxes, dtype=np.float32).reshape(-1, 4), names


def load_box_folder(folder: str | Path) -> list[BoxedImage]:
    """A user's images (PNG, JPEG, TIFF), each with its labels beside it under the same stem: IMG.xml (Pascal
    VOC) or IMG.txt (YOLO; class names from classes.txt, one a line, when the folder has one)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"{folder} is not a folder: --set data=DIR names a folder of images, each with its "
                             "labels beside it (IMG.png + IMG.xml in Pascal VOC, or IMG.txt in YOLO format)")
    classes_file = folder / "classes.txt"
    class_names = read_user_text(classes_file, "class names, one a line (UTF-8 text)").split("\n") \
        if classes_file.exists() else []
    class_names = [c.strip() for c in class_names if c.strip()]
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            continue
        image = np.asarray(open_image(path, TILE))
        xml, txt = path.with_suffix(".xml"), path.with_suffix(".txt")
        if xml.exists():
            boxes, names = read_voc(xml, image.shape)
        elif txt.exists():
            boxes, names = read_yolo(txt, image.shape[1], image.shape[0], class_names)
        else:
            raise InputFileError(f"{path} has no labels beside it: add {xml.name} (Pascal VOC) or {txt.name} "
                                 "(YOLO), or move the image out of the folder")
        boxes, inside = clip_boxes(boxes, image.shape)
        if not inside.all():
            h, w = image.shape[:2]
            note(f"note: {path.name}: {int((~inside).sum())} of its {len(inside)} boxes lie wholly outside the {w}x{h} "
                 "image and are left out; check that the labels belong to this image")
        out.append(BoxedImage(path.stem, image, boxes, [n for n, keep in zip(names, inside) if keep]))
    if not out:
        raise InputFileError(f"{folder} holds no images (.png, .jpg, .tif) with labels beside them")
    if not any(len(b.boxes) for b in out):
        raise InputFileError(f"{folder}: no image has a labelled box; a detector needs examples of the objects")
    return out


def clip_boxes(boxes: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, without those that have no area left, and the mask of the boxes kept."""
    h, w = shape[:2]
    b = np.stack([boxes[:, 0].clip(0, w), boxes[:, 1].clip(0, h), boxes[:, 2].clip(0, w), boxes[:, 3].clip(0, h)], 1)
    inside = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[inside].astype(np.float32), inside


def _parse_neon_trees(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for name, (stem, _, _) in IMAGES.items():
        image = np.asarray(open_image(paths[f"{stem}.png"]))
        boxes, _ = read_voc(paths[f"{stem}.xml"])   # Tree; SOAP's Alive and Dead: trees too
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out[f"{name}_image"] = image
        out[f"{name}_boxes"] = boxes[keep]
        out[f"{name}_labels"] = np.zeros(int(keep.sum()), dtype=np.int64)   # every crown is class 0, "Tree"
    return out


register(Dataset(
    name="neon-trees",
    kind="object detection",
    description="tree crowns boxed by hand in NEON aerial RGB images (10 cm a pixel): two large crops of "
                "Yellowstone and one tile each from Florida and California, from the deepforest package",
    licence="MIT (deepforest); NEON data: CC0",
    size="4 images, 951 boxes: YELL 2299x2472 (574) and 1249x1035 (279), OSBS 400x400 (61), SOAP 400x400 (37)",
    files=tuple(RawFile(f"{stem}.{ext}", sha, f"deepforest/data/{stem}.{ext}")
                for stem, png, xml in IMAGES.values() for ext, sha in (("png", png), ("xml", xml))),
    sources=(PyPI(*DEEPFOREST),),
    parse=_parse_neon_trees,
    meta={"classes": ["Tree"], "images": list(IMAGES), "other sites": ["osbs", "soap"]},
))
