"""Annotation: label sets, versioned segmentations, geometric annotations, tasks and review,
agreement between annotators and consensus label maps."""

from carina.annotation.blobs import BlobStore, content_digest
from carina.annotation.store import (
    AnnotationStore,
    AssignmentInfo,
    LabelSetInfo,
    SegmentationInfo,
    ShapeInfo,
    ShapeKind,
    TaskInfo,
    TaskState,
    VersionInfo,
)

__all__ = [
    "AnnotationStore",
    "AssignmentInfo",
    "BlobStore",
    "LabelSetInfo",
    "SegmentationInfo",
    "ShapeInfo",
    "ShapeKind",
    "TaskInfo",
    "TaskState",
    "VersionInfo",
    "content_digest",
]
