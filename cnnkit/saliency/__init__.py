"""Where the network looked: Grad-CAM, Grad-CAM++ and occlusion, for images and videos.

- ``methods``: the maps themselves, layers, overlays, peaks;
- ``images``: maps for batches of images, as :class:`Explanation`s;
- ``videos``: maps over time, written as an MP4;
- ``files``: ``cnnkit explain`` on files (PNG and MP4 outputs, records).
"""

from cnnkit.saliency.files import check_request, explain_sources
from cnnkit.saliency.images import Explanation, batch_maps, explain_images
from cnnkit.saliency.methods import (
    METHODS,
    check_map_layer,
    check_method,
    default_layer,
    find_layer,
    gradcam,
    occlusion,
    overlay,
    peak,
    spatial_layers,
)
from cnnkit.saliency.videos import explain_video

__all__ = [
    "METHODS",
    "Explanation",
    "batch_maps",
    "check_map_layer",
    "check_method",
    "check_request",
    "default_layer",
    "explain_images",
    "explain_sources",
    "explain_video",
    "find_layer",
    "gradcam",
    "occlusion",
    "overlay",
    "peak",
    "spatial_layers",
]
