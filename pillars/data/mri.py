"""Brain MRI for segmentation: the Colin27 T1 volume with two label sets, and a user's own image/label pairs.

Debian's `mricron-data` ships MRIcron's templates (BSD-3), all on one 181 x 217 x 181 grid of 1 mm voxels in
MNI space (RAS axes):

    ch2.nii.gz      "Colin27" (Holmes et al. 1998): 27 T1 scans of one man, registered and averaged; uint8
    ch2bet.nii.gz   the same volume skull-stripped by FSL's BET: the brain mask is its voxels > 0
    aal.nii.gz      the AAL atlas (Tzourio-Mazoyer et al. 2002): 116 regions drawn on this very brain
    aal.nii.txt     one line a region: index, name, AAL code

Two label sets come from them: `mask`, brain against the rest, and `lobes`, AAL's 116 regions grouped by
the first digit of their AAL codes into the atlas's own 8 groups (2 frontal, 3 insula, 4 limbic, 5 occipital,
6 parietal, 7 deep grey nuclei, 8 temporal, 9 cerebellum), both hemispheres together. AAL labels grey matter
only: white matter, ventricles and everything outside the brain are background. Harvard-Oxford, in the same
package, sits on another grid (FSL's MNI152, 182 x 218 x 182, LAS) and was drawn on other brains; the Brodmann
map is cytoarchitecture that a T1 image does not show. AAL is the atlas whose borders follow this image.

A volume becomes axial slices in neurological convention: rows run from the front of the head (top) to the
back, columns from the subject's left to right. A user's NIfTI
volumes are first turned to RAS (nibabel's `as_closest_canonical`) so that their slices are the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pillars.data.registry import DataError, Dataset, Debian, InputFileError, RawFile, register

MRICRON = Debian("mricron-data", "1.2.20211006+dfsg-4",
                 "d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f")
TEMPLATES = "usr/share/mricron/templates/"
COLIN27_FILES = {   # name: sha256
    "ch2.nii.gz": "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
    "ch2bet.nii.gz": "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1",
    "aal.nii.gz": "b512dcd3f36b77f56be7a9a038134096e66314b7e8c31d25875b96bcf6991454",
    "aal.nii.txt": "1788d6556a9ec056de9867b2382cf1ce1b51b87ae4cfd9cd25de48ae4dde709e",
}
AAL_LOBES = ("frontal", "insula", "limbic", "occipital", "parietal", "deep grey", "temporal", "cerebellum")
LABEL_SETS = ("mask", "lobes")


def read_nifti(path: Path) -> np.ndarray:
    """A NIfTI file's voxels turned to RAS axes (x: left to right, y: back to front, z: up), as stored."""
    import nibabel as nib
    try:
        return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except Exception as e:   # nibabel's own errors (ImageFileError, a truncated gzip: EOFError, OSError)
        raise InputFileError(f"{path} cannot be read as a NIfTI image ({type(e).__name__}: {e}); give a .nii "
                             "or .nii.gz file") from None


def axial_slices(volume: np.ndarray, path: Path | str = "a volume") -> np.ndarray:
    """A RAS volume (X, Y, Z) as its axial slices (Z, Y, X), each with the front of the head on top and the
    subject's left on the left; a 2-D array (X, Y) is one slice. `path` names the file in the messages."""
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise InputFileError(f"{path} holds an array of shape {'x'.join(map(str, volume.shape))}: give one 2-D or "
                             "3-D volume a file (one time point or one channel of a 4-D series, e.g. fslroi or "
                             "nibabel's slicer)")
    return np.ascontiguousarray(volume.transpose(2, 1, 0)[:, ::-1, :])


def aal_lobe_table(txt: Path) -> np.ndarray:
    """AAL region index -> lobe (1-8, AAL_LOBES[lobe - 1]; 0 for the background), from the first digit of
    each region's AAL code in aal.nii.txt (`1 Precentral_L 2001`: 2, frontal)."""
    table = np.zeros(256, dtype=np.uint8)
    for line in txt.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[0].isdigit() or parts[2][0] not in "23456789":
            raise DataError(f"{txt}: {line!r} is not `index name code` with an AAL code 2xxx-9xxx: delete it "
                            "and fetch the dataset again")
        table[int(parts[0])] = int(parts[2][0]) - 1
    return table


def _parse_colin27(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    t1, bet, aal = (read_nifti(paths[n]) for n in ("ch2.nii.gz", "ch2bet.nii.gz", "aal.nii.gz"))
    if not t1.shape == bet.shape == aal.shape:
        raise DataError(f"the Colin27 volumes differ in shape ({t1.shape}, {bet.shape}, {aal.shape}): delete "
                        "them and fetch the dataset again")
    return {"t1": axial_slices(t1).astype(np.uint8), "mask": axial_slices(bet > 0).astype(np.uint8),
            "lobes": axial_slices(aal_lobe_table(paths["aal.nii.txt"])[aal]).astype(np.uint8)}


register(Dataset(
    name="colin27",
    kind="image segmentation",
    description="the Colin27 T1 brain MRI (one man, 27 scans averaged) with its brain mask (the BET-stripped "
                "copy) and the AAL atlas's 116 regions in its 8 lobes, from MRIcron's templates",
    licence="BSD-3-Clause (MRIcron's templates)",
    size="one subject: 181 axial slices of 217 x 181 1-mm voxels; labels: mask (2 classes), lobes (9)",
    files=tuple(RawFile(n, h, TEMPLATES + n) for n, h in COLIN27_FILES.items()),
    sources=(MRICRON,),
    parse=_parse_colin27,
    meta={"label sets": {"mask": ["background", "brain"], "lobes": ["background", *AAL_LOBES]}},
))


# ----------------------------------------------------------------------------- a user's image/label pairs

@dataclass
class Case:
    """One subject (a volume) or one image of a user's data: its slices (Z, H, W) as float32 in [0, 1]
    (`scaled`) and its integer labels as stored (Z, H, W)."""
    name: str
    image: np.ndarray
    labels: np.ndarray
    volume: bool                 # slices of one volume (slabs are held out), or a single image


def scaled(image: np.ndarray) -> np.ndarray:
    """Intensities mapped to [0, 1] by the 0.5th and 99.5th percentiles of the whole image or volume (MRI
    has no absolute unit; CT's outliers, metal and air, would otherwise squeeze the rest), then clipped."""
    x = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(x, [0.5, 99.5]) if x.size else (0.0, 1.0)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def integer_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """Labels as int64, refused when they are not whole non-negative numbers (a probability map, an image)."""
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InputFileError(f"{path}: labels must be whole numbers (0 the background, 1, 2, ... the classes), "
                                 "not fractions: is it an image or a probability map? Threshold or round it")
    elif labels.dtype.kind not in "iub":
        raise InputFileError(f"{path}: labels of type {labels.dtype} are not integers")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise InputFileError(f"{path}: labels must not be negative (found {labels.min()})")
    return labels


def grey_png(path: Path, what: str) -> np.ndarray:
    """A PNG's pixels as one channel: grey or palette indices as stored, colour only when its channels agree."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            mode = im.mode
            pixels = np.asarray(im.convert("RGB") if mode in ("RGBA", "LA", "CMYK", "YCbCr") else im)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputFileError(f"{path} cannot be read as a PNG image ({e})") from None
    if pixels.ndim == 3:
        if what == "mask" and np.any(pixels != pixels[..., :1]):
            raise InputFileError(f"{path}: a mask must be grey or a palette image, one value per class, not colour "
                                 "(convert it so that each class is one grey level: 0, 1, 2, ... or 0 and 255)")
        pixels = pixels[..., 0] if what == "mask" else np.asarray(Image.fromarray(pixels).convert("L"))
    return pixels


def read_case(image_path: Path, label_path: Path) -> Case:
    """One pair of a user's folder: NIfTI (`CASE_image.nii.gz` + `CASE_label.nii.gz`) or PNG (`CASE_image.png`
    + `CASE_mask.png`)."""
    volume = not image_path.name.endswith(".png")
    if volume:
        image = axial_slices(read_nifti(image_path), image_path)
        labels = axial_slices(read_nifti(label_path), label_path)
    else:
        image, labels = grey_png(image_path, "image")[None], grey_png(label_path, "mask")[None]
    if image.shape != labels.shape:
        raise InputFileError(f"{image_path} ({'x'.join(map(str, image.shape))}) and {label_path} "
                             f"({'x'.join(map(str, labels.shape))}) differ in shape: a label file must label every "
                             "voxel of its image")
    name = image_path.name.split("_image.")[0]
    return Case(name, scaled(image), integer_labels(labels, label_path), volume)


PAIR_NAMES = {"_image.nii.gz": "_label.nii.gz", "_image.nii": "_label.nii", "_image.png": "_mask.png"}


def segmentation_pairs(root: str | Path) -> list[Case]:
    """A user's folder of image/label pairs: NIfTI volumes `CASE_image.nii.gz` with integer labels in
    `CASE_label.nii.gz` (or .nii), or PNG images `CASE_image.png` with masks `CASE_mask.png`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputFileError(f"--set data={root}: no such folder (give a folder of CASE_image.nii.gz + "
                             "CASE_label.nii.gz, or CASE_image.png + CASE_mask.png, pairs)")
    pairs = []
    for path in sorted(root.iterdir()):
        suffix = next((s for s in PAIR_NAMES if path.name.endswith(s)), None)
        if suffix is None:
            continue
        label = path.with_name(path.name[:-len(suffix)] + PAIR_NAMES[suffix])
        if not label.is_file():
            raise InputFileError(f"{path} has no label file: expected {label.name} beside it")
        pairs.append((path, label))
    if not pairs:
        raise InputFileError(f"{root} holds no image/label pairs: name them CASE_image.nii.gz + CASE_label.nii.gz "
                             "(integer labels, 0 the background) or CASE_image.png + CASE_mask.png")
    kinds = {p.name.endswith(".png") for p, _ in pairs}
    if len(kinds) > 1:
        raise InputFileError(f"{root} mixes NIfTI and PNG pairs: keep one kind in a folder")
    return [read_case(p, label) for p, label in pairs]


def slab_roles(n: int, slab: int, gap: int, period: int) -> np.ndarray:
    """The split of a volume's `n` slices (str array: train, valid, test, gap): every `period` slices, a test
    slab of `slab` slices centred a quarter of the way in and a validation slab centred three quarters of the
    way in, each with `gap` slices on either side used by neither training nor evaluation (neighbouring
    slices look alike: a slice beside a held-out one would leak it)."""
    roles = np.full(n, "train", dtype=object)
    for start in range(0, n, period):
        for centre, role in ((start + period // 4, "test"), (start + 3 * period // 4, "valid")):
            lo = centre - slab // 2
            around = roles[max(lo - gap, 0):min(lo + slab + gap, n)]   # a view: assignments reach `roles`
            around[around == "train"] = "gap"
            roles[max(lo, 0):min(lo + slab, n)] = role
    return roles.astype(str)
