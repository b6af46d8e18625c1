"""matplotlib without a display, and the finishing touches every figure of the project shares."""
from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish_line_plot(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def image_grid(images, nrow: int = 8, pad: int = 2):
    """images (N, C, H, W) in [0, 1] -> one (C, rows * (H + pad) + pad, ...) grid, padded in white."""
    import torch
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = img
    return grid


def save_png(img, path: Path) -> None:
    """A Pillow image written as a PNG atomically (encoded in memory, then `write_bytes_atomic`), its folder made."""
    import io
    from pillars.config import write_bytes_atomic
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    img.save(png, format="PNG")
    write_bytes_atomic(path, png.getvalue())


def save_image_grid(grid, path: Path, scale: int = 2) -> None:
    """A (C, H, W) grid in [0, 1] as a PNG, each pixel `scale` x `scale`; written atomically."""
    import numpy as np
    from PIL import Image
    arr = (grid.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    arr = np.repeat(np.repeat(arr, scale, 0), scale, 1)
    save_png(Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr), path)


def draw_boxes(image, boxes, truth, hits, path: Path, scores=None) -> None:
    """An image (3, H, W) uint8 with boxes drawn on it, written as a PNG (atomically): the ground truth in blue
    (when given), the detections in green where `hits` marks them true positives and in red otherwise (all
    green when `hits` is None), with their scores when given."""
    from PIL import Image, ImageDraw
    img = Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).convert("RGB")
    draw = ImageDraw.Draw(img)
    for b in ([] if truth is None else truth.tolist()):
        draw.rectangle(b, outline=(40, 120, 255), width=2)
    for i, b in enumerate(boxes.tolist()):
        colour = (40, 220, 40) if hits is None or hits[i] else (255, 40, 40)
        draw.rectangle(b, outline=colour, width=2)
        if scores is not None:
            draw.text((b[0] + 2, b[1] + 1), f"{float(scores[i]):.2f}", fill=colour)
    save_png(img, path)
