"""Models: encoders, the two-branch matcher and the similarity measures."""
from .image_encoder import BACKBONES, ImageEncoder, ModelError
from .matcher import BRANCHES, Matcher
from .similarity import similarity
from .text_encoder import TextEncoder

__all__ = ["BACKBONES", "BRANCHES", "ImageEncoder", "Matcher", "ModelError", "TextEncoder", "similarity"]
