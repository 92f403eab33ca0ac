"""Search a user's own collection: index a folder (or a caption file) once with a trained run, query
it exactly or through an approximate shortlist, export its vectors (see gallery/store.py for the
file layout)."""
from .export import EXPORT_FORMATS, describe, export_gallery
from .indexer import IndexResult, index_folder
from .query import retrieve_gallery
from .store import Gallery, GalleryError, read_gallery, write_gallery

__all__ = ["EXPORT_FORMATS", "Gallery", "GalleryError", "IndexResult", "describe", "export_gallery", "index_folder",
           "read_gallery", "retrieve_gallery", "write_gallery"]
