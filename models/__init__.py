"""Models: encoders, the two-branch matcher, the similarity measures, the caption decoder, LIM."""
from .caption_decoder import CaptionDecoder
from .image_encoder import BACKBONES, ImageEncoder, ModelError
from .matcher import BRANCHES, Matcher
from .similarity import similarity
from .text_encoder import TextEncoder

__all__ = ["BACKBONES", "BRANCHES", "CaptionDecoder", "ImageEncoder", "Matcher", "ModelError", "TextEncoder",
           "similarity"]
