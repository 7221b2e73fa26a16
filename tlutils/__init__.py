"""tlutils — an exact, tested SSD-VGG16 core for studying transfer learning of traffic-sign detectors.

Modules in pipeline order (each states its conventions once):

- ``tlutils.boxes``      box formats and IoU
- ``tlutils.anchors``    default boxes (= anchors = prior boxes) of SSD
- ``tlutils.encoding``   matching ground truth to anchors, offset encoding and its inverse
- ``tlutils.losses``     the MultiBox loss (softmax confidence + Smooth L1 localization)
- ``tlutils.decoding``   from network outputs to detections (per-class NMS, top-k)
- ``tlutils.evaluation`` mean average precision (Pascal VOC rules and COCO's 101 points)
- ``tlutils.model``      SSD-VGG16, freeze points, class-mapped weight transfer
- ``tlutils.data``       the embedded sign world, dataset loaders, augmentation, batching
- ``tlutils.transfer``   transfer strategies (scratch, imagenet, freeze, finetune, two_stage, head_only)
- ``tlutils.experiment`` the experiment runner and sweeps

Conventions everywhere: boxes are normalized to [0, 1] unless a name says ``pixel``; corners are
``(xmin, ymin, xmax, ymax)``; centroids are ``(cx, cy, w, h)``. Class 0 is background, object classes
are ``1..C``.

Importing ``tlutils`` has no side effects and does not import a deep-learning backend; each module
imports what it needs.
"""

__version__ = "0.1.0"
