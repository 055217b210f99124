"""cnnstudy: run whole image-classification studies from a YAML file."""
from .models import create_model, list_models

__all__ = ["create_model", "list_models"]
__version__ = "0.1.0"
