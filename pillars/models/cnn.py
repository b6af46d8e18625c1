"""Convolutional networks: classifiers, a one-stage detector (FCOS) and a segmentation network (U-Net).

A convolution slides one small filter bank over every position of the image (LeCun et al. 1998), so a
pattern learned in one place is recognised in any other; pooling then discards exact positions. Stacking
conv layers grows the receptive field: early layers see edges, later layers see parts and whole objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ConvNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    widths: tuple[int, ...] = (32, 64)   # one stage per width: two 3x3 convs, then 2x2 max-pool
    hidden: int = 128                    # width of the fully connected layer before the classifier
    batch_norm: bool = True
    dropout: float = 0.25


class ConvBlock(nn.Sequential):
    """conv 3x3 -> (BatchNorm) -> ReLU. With BatchNorm the conv needs no bias (BN's shift replaces it)."""

    def __init__(self, cin: int, cout: int, batch_norm: bool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ConvNet(nn.Module):
    """A small VGG-style network (Simonyan & Zisserman 2014): stages of two 3x3 convolutions and a
    2x2 max-pool, then one hidden fully connected layer and the classifier."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.cfg = cfg
        stages, cin, side = [], cfg.in_channels, cfg.image_size
        for width in cfg.widths:
            stages += [ConvBlock(cin, width, cfg.batch_norm), ConvBlock(width, width, cfg.batch_norm),
                       nn.MaxPool2d(2)]
            cin, side = width, side // 2
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cin * side * side, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embedding(x))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations (B, hidden): the features the classifier reads."""
        return F.relu(self.fc(self.dropout(self.features(x).flatten(1))))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """The logits from the hidden layer's activations (`embedding`)."""
        return self.head(self.dropout(h))


# ----------------------------------------------------------------------------- LeNet-5 (LeCun et al. 1998)

@dataclass
class LeNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28     # the paper's 32x32 input is a 28x28 digit with a 2-pixel border: padding 2


class LeNet5(nn.Module):
    """C1 conv 5x5 (6) -> S2 pool -> C3 conv 5x5 (16) -> S4 pool -> C5 (120) -> F6 (84) -> output.
    Tanh squashing and average-pool subsampling as in the paper; a plain linear output replaces the
    paper's RBF units."""

    def __init__(self, cfg: LeNetConfig):
        super().__init__()
        self.cfg = cfg
        pad = (32 - cfg.image_size) // 2 if cfg.image_size < 32 else 0
        self.c1 = nn.Conv2d(cfg.in_channels, 6, 5, padding=pad)
        self.c3 = nn.Conv2d(6, 16, 5)
        side = ((cfg.image_size + 2 * pad - 4) // 2 - 4) // 2
        self.c5 = nn.Linear(16 * side * side, 120)
        self.f6 = nn.Linear(120, 84)
        self.head = nn.Linear(84, cfg.num_classes)
        self.features = nn.Sequential(self.c1, nn.Tanh(), nn.AvgPool2d(2), self.c3, nn.Tanh(), nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.head(torch.tanh(self.f6(torch.tanh(self.c5(x)))))


# ----------------------------------------------------------------------------- ResNet (He et al. 2016)

@dataclass
class ResNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)   # one stage per width; stages after the first halve the size
    blocks: int = 2                           # basic blocks per stage
    dropout: float = 0.0
    stem_pool: bool = False                   # 2x2 max-pool after the stem: every stage on a quarter of the pixels


class BasicBlock(nn.Module):
    """y = relu(F(x) + shortcut(x)), F = conv3x3-BN-ReLU-conv3x3-BN. The residual form lets a deep stack
    start as (nearly) the identity, which is what made very deep networks trainable."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)   # each block starts as the identity (Goyal et al. 2017)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class ResNet(nn.Module):
    """A ResNet for small images (the CIFAR form of the paper): a 3x3 stem at full resolution, stages of
    basic blocks, global average pooling and a linear classifier."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0),
                                  nn.ReLU(inplace=True), *([nn.MaxPool2d(2)] if cfg.stem_pool else []))
        stages, cin = [], w0
        for i, width in enumerate(cfg.widths):
            blocks = [BasicBlock(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1)
                      for j in range(cfg.blocks)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.dropout(x.mean((2, 3))))


# ----------------------------------------------------------------------------- EfficientNet-Lite0 (Tan & Le 2019)

@dataclass
class EfficientNetLiteConfig:
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.2
    drop_connect: float = 0.2    # stochastic depth, growing linearly with block index
    bn_momentum: float = 0.01    # TensorFlow's 0.99 decay; 0.1 lets running statistics follow a new domain sooner
    # (repeats, kernel, stride, expand ratio, in channels, out channels) of each stage of Lite0
    stages: tuple = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                     (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
    stem: int = 32
    head: int = 1280


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' padding (asymmetric for even inputs and stride 2), which
    the ported ImageNet weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True,
                 momentum: float = 0.01):
        super().__init__()
        self.conv = SameConv(cin, cout, k, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=momentum)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Mobile inverted bottleneck (Sandler et al. 2018): expand 1x1 -> depthwise kxk -> project 1x1 (linear),
    with a residual when the shape is kept. The Lite variants drop squeeze-and-excitation and use ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop: float, momentum: float):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid, momentum=momentum) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid, momentum=momentum)
        self.project = ConvBNAct(mid, cout, act=False, momentum=momentum)
        self.residual = stride == 1 and cin == cout
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop > 0:   # drop the whole branch per sample, rescale the survivors
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.drop
            out = out * keep / (1 - self.drop)
        return x + out


class EfficientNetLite(nn.Module):
    def __init__(self, cfg: EfficientNetLiteConfig = EfficientNetLiteConfig()):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBNAct(cfg.in_channels, cfg.stem, 3, 2, momentum=cfg.bn_momentum)
        specs = [(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e)
                 for r, k, s, e, cin, cout in cfg.stages for j in range(r)]
        self.blocks = nn.Sequential(*[MBConv(*spec, drop=cfg.drop_connect * i / len(specs), momentum=cfg.bn_momentum)
                                      for i, spec in enumerate(specs)])
        self.head = ConvBNAct(cfg.stages[-1][-1], cfg.head, momentum=cfg.bn_momentum)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.head, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean((2, 3))))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.cfg.head, num_classes)


def efficientnet_from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the reference EfficientNet-PyTorch layout (`_blocks.3._bn1.weight`, ...)
    to this file's names (`blocks.3.depthwise.bn.weight`, ...)."""
    block = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
             "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
           "_fc": "classifier"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            name = f"blocks.{parts[1]}.{block[parts[2]]}.{'.'.join(parts[3:])}"
        else:
            name = f"{top[parts[0]]}.{'.'.join(parts[1:])}"
        out[name] = value
    return out


# ----------------------------------------------------------------------------- U-Net (Ronneberger et al. 2015)

@dataclass
class UNetConfig:
    in_channels: int = 1
    num_classes: int = 2
    width: int = 16          # channels of the first level; each level down doubles them
    depth: int = 4           # 2x2 max-pools on the contracting path (the paper: 4, from 64 to 1024 channels)
    batch_norm: bool = True  # after every 3x3 conv (not in the paper, which predates BatchNorm)
    dropout: float = 0.0     # before the bottom level's convs (the paper drops out at the end of the contracting path)


class UNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015): a contracting path of levels of two 3x3 convs and a 2x2 max-pool,
    whose channels double at every level, then an expanding path that at each level upsamples by a 2x2
    transposed conv (halving the channels), concatenates the contracting path's map of the same level (the
    skip connection: the fine positions that pooling threw away), and applies two 3x3 convs; a 1x1 conv gives
    per-pixel class logits (B, num_classes, H, W). The paper's convs are unpadded, so its output is smaller
    than its input and the image is tiled with overlaps; here they are padded, so the output has the input's
    side, which must be a multiple of 2^depth."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2 ** i for i in range(cfg.depth + 1)]
        cins = [cfg.in_channels] + widths[:-1]
        self.down = nn.ModuleList(nn.Sequential(ConvBlock(cin, w, cfg.batch_norm), ConvBlock(w, w, cfg.batch_norm))
                                  for cin, w in zip(cins, widths))
        self.dropout = nn.Dropout2d(cfg.dropout)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = nn.ModuleList(nn.Sequential(ConvBlock(w, w // 2, cfg.batch_norm),
                                                 ConvBlock(w // 2, w // 2, cfg.batch_norm)) for w in widths[:0:-1])
        self.head = nn.Conv2d(cfg.width, cfg.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.cfg.depth
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"a U-Net of depth {self.cfg.depth} needs sides that are multiples of {side}, "
                             f"not {tuple(x.shape[-2:])}: pad the image")
        skips = []
        for i, level in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            if i == self.cfg.depth:
                x = self.dropout(x)
            x = level(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            x = merge(torch.cat([skip, up(x)], 1))
        return self.head(x)


# ----------------------------------------------------------------------------- FCOS (Tian et al. 2019)

@dataclass
class FCOSConfig:
    num_classes: int = 1
    width: int = 64                        # channels of the feature pyramid and of the head (paper: 256)
    head_convs: int = 2                    # 3x3 conv + GroupNorm + ReLU layers per head branch (paper: 4)
    strides: tuple[int, ...] = (8, 16, 32)  # P3, P4, P5: the levels of the pyramid the head reads
    # a location of level i regresses a box whose largest distance max(l, t, r, b) lies in
    # [bounds[i - 1], bounds[i]) (paper: 64, 128, 256, 512 for P3..P7)
    bounds: tuple[float, ...] = (64.0, 128.0)
    center_radius: float = 1.5             # center sampling: positives within radius x stride of a box's centre
    prior: float = 0.01                    # the classifier's initial foreground probability (RetinaNet)
    input_scale: float = 1.0               # images are enlarged by this first (small objects: more locations each)
    drop_connect: float = 0.1              # the backbone's stochastic depth
    bn_momentum: float = 0.1


# where EfficientNet-Lite0's blocks end each stride: C3 (stride 8), C4 (16) and C5 (32), and their channels
LITE0_LEVELS = {8: (5, 40), 16: (11, 112), 32: (16, 320)}


class FCOS(nn.Module):
    """Fully convolutional one-stage detection (Tian et al. 2019): every location (x, y) of every pyramid level
    predicts class scores, the distances (l, t, r, b) from itself to the four sides of the box it lies in, and
    its "centerness" sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)), which ranks boxes from locations near
    an object's centre above those from its rim. No anchor boxes: a location inside a ground-truth box (near
    its centre, with center sampling) is a positive of that box.

    The backbone is EfficientNet-Lite0 (this file's classifier without its head); a feature pyramid (Lin et al.
    2017) merges its stride-8, 16 and 32 outputs top-down; one head, shared by the levels, reads each."""

    def __init__(self, cfg: FCOSConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = EfficientNetLite(EfficientNetLiteConfig(drop_connect=cfg.drop_connect,
                                                                bn_momentum=cfg.bn_momentum))
        del self.backbone.head, self.backbone.classifier, self.backbone.dropout   # only the feature stages
        levels = [LITE0_LEVELS[s] for s in cfg.strides]
        self.ends = [end for end, _ in levels]
        w = cfg.width
        self.lateral = nn.ModuleList(nn.Conv2d(c, w, 1) for _, c in levels)
        self.smooth = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in levels)

        def tower():
            layers = []
            for _ in range(cfg.head_convs):
                layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.GroupNorm(min(32, w // 4), w), nn.ReLU()]
            return nn.Sequential(*layers)
        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(w, cfg.num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(w, 4, 3, padding=1)
        self.centerness = nn.Conv2d(w, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(cfg.strides)))   # exp(s_i x): one learned scale per level
        for m in [*self.cls_tower, *self.box_tower, self.cls_logits, self.box_pred, self.centerness]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - cfg.prior) / cfg.prior))

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """P3..P5: the backbone's outputs at each stride, merged top-down (upsample and add) and smoothed."""
        feats, h = [], self.backbone.stem(x)
        for i, block in enumerate(self.backbone.blocks):
            h = block(h)
            if i + 1 in self.ends:
                feats.append(h)
        out = [None] * len(feats)
        top = None
        for i in reversed(range(len(feats))):
            lat = self.lateral[i](feats[i])
            top = lat if top is None else lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            out[i] = self.smooth[i](top)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits (B, N, classes), box distances in pixels (B, N, 4) and centerness logits (B, N) of the N
        locations of every level, level after level, each level row-major (as `locations` lists them)."""
        cls, box, ctr = [], [], []
        if self.cfg.input_scale != 1:
            x = F.interpolate(x, scale_factor=self.cfg.input_scale, mode="bilinear", align_corners=False)
        for i, p in enumerate(self.pyramid(x)):
            c, b = self.cls_tower(p), self.box_tower(p)
            cls.append(self.cls_logits(c).flatten(2).transpose(1, 2))
            stride = self.cfg.strides[i] / self.cfg.input_scale   # the level's stride in the image's own pixels
            dist = stride * torch.exp((self.scales[i] * self.box_pred(b).float()).clamp(max=8))
            box.append(dist.flatten(2).transpose(1, 2))
            ctr.append(self.centerness(b).flatten(1))
        return torch.cat(cls, 1), torch.cat(box, 1), torch.cat(ctr, 1)

    def locations(self, height: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The image coordinates (N, 2) of every location of every level (floor(s / 2) + s x j, as the
        paper maps them, in the enlarged image), and each one's level index (N,)."""
        points, level = [], []
        k = self.cfg.input_scale
        height, width = (math.floor(height * k), math.floor(width * k)) if k != 1 else (height, width)
        for i, s in enumerate(self.cfg.strides):
            h, w = math.ceil(height / s), math.ceil(width / s)   # 'SAME' padding: ceil(size / stride)
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            points.append((torch.stack([xs, ys], -1).reshape(-1, 2) * s + s // 2) / k)
            level.append(torch.full((h * w,), i, device=device))
        return torch.cat(points).float(), torch.cat(level)


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), both (x0, y0, x1, y1): (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy non-maximum suppression: take the best-scoring box left, drop every box that overlaps it by more
    than `iou`, repeat. The indices kept, best first."""
    order = scores.argsort(descending=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):   # the loop reads the precomputed overlaps; a Python step per surviving box
        if alive[i]:
            keep.append(i)
            alive &= ~overlaps[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float) -> torch.Tensor:
    """NMS within each class: boxes of different classes never suppress each other (each class's boxes are moved
    apart by an offset larger than any coordinate before one NMS)."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = classes.to(boxes)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, scores, iou)


def fcos_targets(model: FCOS, boxes: torch.Tensor, labels: torch.Tensor, height: int, width: int):
    """Each location's class (B, N; -1: background), and the distances (B, N, 4) to the sides of the box it
    regresses. A location is a positive of a box when it lies inside it, within center_radius x stride of its
    centre, and the box's largest distance from it falls in its level's range; of several, the smallest box.
    `boxes` (B, M, 4) in pixels and `labels` (B, M) with -1 marking padding."""
    cfg = model.cfg
    points, level = model.locations(height, width, boxes.device)
    strides = torch.tensor(cfg.strides, device=boxes.device, dtype=torch.float)[level] / cfg.input_scale
    edges = torch.tensor([0.0, *cfg.bounds, float("inf")], device=boxes.device) / cfg.input_scale
    lo, hi = edges[level], edges[level + 1]
    x, y = points[None, :, None, 0], points[None, :, None, 1]                            # 1, N, 1
    x0, y0, x1, y1 = (boxes[:, None, :, k] for k in range(4))                             # B, 1, M
    dist = torch.stack([x - x0, y - y0, x1 - x, y1 - y], -1)                             # B, N, M, 4
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = cfg.center_radius * strides[None, :, None]
    near = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    biggest = dist.max(-1).values
    ok = (dist.min(-1).values > 0) & near & (biggest >= lo[None, :, None]) & (biggest < hi[None, :, None])
    ok &= (labels >= 0)[:, None, :]
    area = torch.where(ok, box_area(boxes)[:, None, :].expand_as(ok), torch.full_like(biggest, float("inf")))
    best = area.argmin(-1)                                                                 # B, N
    positive = ok.gather(-1, best[..., None]).squeeze(-1)
    cls = torch.where(positive, labels.gather(1, best), torch.full_like(best, -1))
    dist = dist.gather(2, best[:, :, None, None].expand(-1, -1, 1, 4)).squeeze(2)
    return cls, dist


def centerness_target(dist: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)) of distances (..., 4) = (l, t, r, b)."""
    lr, tb = dist[..., [0, 2]], dist[..., [1, 3]]
    return ((lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)).clamp(min=0).sqrt()


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU (Rezatofighi et al. 2019) of boxes given as distances (l, t, r, b) from one point."""
    area_p = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_t = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    w = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])
    h = torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    inter = w * h
    union = area_p + area_t - inter
    hull = ((torch.maximum(pred[:, 0], target[:, 0]) + torch.maximum(pred[:, 2], target[:, 2]))
            * (torch.maximum(pred[:, 1], target[:, 1]) + torch.maximum(pred[:, 3], target[:, 3])))
    return 1 - inter / union + (hull - union) / hull


def fcos_loss(model: FCOS, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
              alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """The paper's loss: focal loss (Lin et al. 2017) on every location's classes, over the positives' count;
    box regression (GIoU) and centerness (binary cross-entropy) on the positives, the regression weighted by
    the centerness target."""
    logits, dist, ctr = model(images)
    cls, target = fcos_targets(model, boxes, labels, *images.shape[-2:])
    pos = cls >= 0
    n_pos = pos.sum().clamp(min=1).float()
    onehot = F.one_hot(cls.clamp(min=0), model.cfg.num_classes).float() * pos[..., None]
    focal = sigmoid_focal_loss(logits.float(), onehot, alpha, gamma).sum() / n_pos
    if not pos.any():
        return focal + 0 * dist.sum() + 0 * ctr.sum()
    ctr_target = centerness_target(target[pos])
    box = (giou_loss(dist[pos], target[pos]) * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    center = F.binary_cross_entropy_with_logits(ctr[pos].float(), ctr_target, reduction="sum") / n_pos
    return focal + box + center


def sigmoid_focal_loss(logits, targets, alpha, gamma):
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) per element."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


@torch.no_grad()
def fcos_detect(model: FCOS, images: torch.Tensor, sizes: torch.Tensor | None = None, threshold: float = 0.05,
                top_k: int = 1000, iou: float = 0.6, max_detections: int = 300) -> list[torch.Tensor]:
    """Detections of every image: (K, 6) rows (x0, y0, x1, y1, score, class), best first. A location's score
    is sqrt(class probability x centerness); the `top_k` above `threshold` per image, decoded into boxes clipped
    to the image (its (height, width) in `sizes`, where a batch was padded), then NMS per class."""
    logits, dist, ctr = model(images)
    points, _ = model.locations(*images.shape[-2:], images.device)
    prob = logits.float().sigmoid()
    score = (prob * ctr.float().sigmoid()[..., None]).sqrt()
    out = []
    for i in range(len(images)):
        h, w = (sizes[i].tolist() if sizes is not None else images.shape[-2:])
        s = torch.where(prob[i] > threshold, score[i], torch.zeros_like(score[i])).flatten()
        s, idx = s.topk(min(top_k, len(s)))
        idx = idx[s > 0]
        s = s[s > 0]
        loc, cls = idx // model.cfg.num_classes, idx % model.cfg.num_classes
        p, d = points[loc], dist[i, loc].float()
        b = torch.stack([p[:, 0] - d[:, 0], p[:, 1] - d[:, 1], p[:, 0] + d[:, 2], p[:, 1] + d[:, 3]], -1)
        inside = (p[:, 0] < w) & (p[:, 1] < h)     # locations over a padded border are not the image's
        b, s, cls = b[inside], s[inside], cls[inside]
        b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], -1)
        keep = batched_nms(b, s, cls, iou)[:max_detections]
        out.append(torch.cat([b[keep], s[keep, None], cls[keep, None].float()], 1))
    return out
