"""cnnstudy: run whole image-classification studies from a YAML file."""
__version__ = "0.2.0"

from .models import create_model, list_models  # noqa: E402

__all__ = ["create_model", "list_models"]
