"""annotation: label sets, segmentations and versions, tasks, geometric annotations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:54:57.194067
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation_label_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name"),
    )
    with op.batch_alter_table("annotation_label_sets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annotation_label_sets_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "geometric_annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("frame_of_reference_uid", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("geometric_annotations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_geometric_annotations_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_geometric_annotations_study_uid"), ["study_uid"], unique=False
        )

    op.create_table(
        "annotation_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("label_set_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("milestone", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["label_set_id"],
            ["annotation_label_sets.id"],
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotation_tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annotation_tasks_milestone"), ["milestone"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annotation_tasks_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "annotation_assignments",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("segmentation_id", sa.Integer(), nullable=True),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("review_comment", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["task_id"], ["annotation_tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "user_id"),
    )
    with op.batch_alter_table("annotation_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annotation_assignments_state"), ["state"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_annotation_assignments_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "segmentations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("label_set_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("geometry", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("head_version_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["label_set_id"],
            ["annotation_label_sets.id"],
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["annotation_tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("segmentations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segmentations_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_segmentations_series_uid"), ["series_uid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_segmentations_study_uid"), ["study_uid"], unique=False)
        batch_op.create_index(batch_op.f("ix_segmentations_task_id"), ["task_id"], unique=False)

    op.create_table(
        "segmentation_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segmentation_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("dtype", sa.String(length=8), nullable=False),
        sa.Column("voxel_counts", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["segmentation_versions.id"],
        ),
        sa.ForeignKeyConstraint(["segmentation_id"], ["segmentations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("segmentation_id", "number"),
    )
    with op.batch_alter_table("segmentation_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segmentation_versions_blob_sha256"), ["blob_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_segmentation_versions_segmentation_id"),
            ["segmentation_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("segmentation_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segmentation_versions_segmentation_id"))
        batch_op.drop_index(batch_op.f("ix_segmentation_versions_blob_sha256"))

    op.drop_table("segmentation_versions")
    with op.batch_alter_table("segmentations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segmentations_task_id"))
        batch_op.drop_index(batch_op.f("ix_segmentations_study_uid"))
        batch_op.drop_index(batch_op.f("ix_segmentations_series_uid"))
        batch_op.drop_index(batch_op.f("ix_segmentations_project_id"))

    op.drop_table("segmentations")
    with op.batch_alter_table("annotation_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_assignments_user_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_assignments_state"))

    op.drop_table("annotation_assignments")
    with op.batch_alter_table("annotation_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_tasks_project_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_tasks_milestone"))

    op.drop_table("annotation_tasks")
    with op.batch_alter_table("geometric_annotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_geometric_annotations_study_uid"))
        batch_op.drop_index(batch_op.f("ix_geometric_annotations_project_id"))

    op.drop_table("geometric_annotations")
    with op.batch_alter_table("annotation_label_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_label_sets_project_id"))

    op.drop_table("annotation_label_sets")
