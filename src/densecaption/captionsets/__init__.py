"""Precision/recall caption sets (Captions4T2I section 3): compose, report tokens, export."""

from densecaption.captionsets.compose import (
                                              Caption,
                                              CaptionSet,
                                              CaptionSetConfig,
                                              ImageParts,
                                              Part,
                                              compose_set,
                                              prepare_image,
)

__all__ = ["Caption", "CaptionSet", "CaptionSetConfig", "ImageParts", "Part", "compose_set", "prepare_image"]
