"""What ``cnnkit inspect`` shows, one module per job.

- :mod:`~cnnkit.summary.layers`: layer tables of a model, with MACs and receptive fields;
- :mod:`~cnnkit.summary.media`: the facts of an image or a video file;
- :mod:`~cnnkit.summary.pictures`: feature maps and kernels as PNG grids;
- :mod:`~cnnkit.summary.targets`: what a TARGET is, and the model or checkpoint behind it.

torch is imported only for models and checkpoints; nothing here imports Lightning.
"""

from cnnkit.summary.layers import summarize_model
from cnnkit.summary.media import PIXEL_BLOCK, channel_stats, summarize_image, summarize_video
from cnnkit.summary.pictures import feature_map_grids, kernel_grid, tile_grid
from cnnkit.summary.targets import (
    InspectedModel,
    detect_target,
    inspect_checkpoint,
    inspect_model,
    load_model_input,
    parse_input_size,
    resolve_input_size,
)

__all__ = [
    "PIXEL_BLOCK",
    "InspectedModel",
    "channel_stats",
    "detect_target",
    "feature_map_grids",
    "inspect_checkpoint",
    "inspect_model",
    "kernel_grid",
    "load_model_input",
    "parse_input_size",
    "resolve_input_size",
    "summarize_image",
    "summarize_model",
    "summarize_video",
    "tile_grid",
]
