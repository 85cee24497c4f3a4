"""Model registry and architectures; importing this package registers every model.

torchvision is imported only when one of its models is built.
"""

from cnnkit.models import cnn2d, cnn3d  # noqa: F401  (registers the builders)
from cnnkit.models.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]
